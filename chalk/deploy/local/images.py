"""Local image builds: a Dockerfile's build context snapshotted into the project's image store.

``chalk image build`` calls ``build_image`` and ``check_tag``. The Dockerfile types and the
replica helpers live in ``dockerfile`` and ``image_runtime`` and are re-exported here.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import itertools
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pathspec

from chalk.catalog.errors import ValidationError
from chalk.catalog.records import LocalImage
from chalk.deploy.local.dockerfile import (
    VARIABLE_NAME,
    BuildError,
    Dockerfile,
    DockerfileError,
    Instruction,
    WordError,
    expand_words,
    parse_dockerfile,
    raw_words,
)
from chalk.deploy.local.image_runtime import (
    DEFAULT_PORT,
    clean_container_path,
    image_argv,
    image_port,
    replica_cwd,
    replica_env,
    rootfs_path,
)

__all__ = [
    "DEFAULT_PORT",
    "FROM_UNUSED",
    "RUN_NOT_EXECUTED",
    "BuildError",
    "BuildResult",
    "BuildStep",
    "Dockerfile",
    "DockerfileError",
    "Instruction",
    "build_image",
    "check_tag",
    "dockerignore_spec",
    "expand_words",
    "image_argv",
    "image_port",
    "parse_dockerfile",
    "replica_cwd",
    "replica_env",
    "rootfs_path",
]

# What the build says of every FROM and RUN (DESIGN.md: "the build says so").
FROM_UNUSED: Final = "not used: the project's Python runs the image"
RUN_NOT_EXECUTED: Final = (
    "not executed: its packages must already be installed in this project's environment"
)
_MULTI_STAGE: Final = (
    "not honoured: multi-stage builds; the image is made of the last stage alone, "
    "the stages before it are skipped"
)
_SKIPPED: Final = "skipped: not part of the last stage"
# The instructions parse_dockerfile accepts that the build names but cannot carry out.
_NOT_HONOURED: Final = {
    "USER": "replicas run as the user who runs the controller",
    "VOLUME": "the local backend mounts no volumes; replicas use the snapshot's files",
    "HEALTHCHECK": "a replica is ready when its port answers the gRPC health check",
    "SHELL": "shell-form commands run with /bin/sh -c",
    "STOPSIGNAL": "replicas get SIGTERM, then SIGKILL when the grace period ends",
    "ONBUILD": "nothing builds on a local image",
}
_COPY_FLAGS: Final = frozenset({"from", "chown", "chmod", "link", "parents", "exclude"})
_ADD_FLAGS: Final = frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"})
# Flags that change which files land where: honouring the copy without them would be wrong.
_UNHONOURED_FLAGS: Final = {
    "from": "copies from another stage or image, which chalk image build does not build; "
    "put the files in the build context and COPY them from there",
    "parents": "keeps the sources' parent folders; name each destination folder instead",
    "exclude": "filters the copied files; list them in .dockerignore instead",
}
# Flags whose effect the local backend cannot have, so the copy goes ahead without them.
_IGNORED_FLAGS: Final = {
    "chown": "the files belong to the user running the controller",
    "chmod": "the files keep their modes from the build context",
    "link": "a snapshot has no layers",
    "checksum": "it checks downloads, and ADD downloads nothing here",
    "keep-git-dir": "it applies to git sources, and ADD clones nothing here",
}
_STATE_DIR: Final = ".chalk"  # the project's own state: never part of an image

_FLAG = re.compile(r"--([A-Za-z][A-Za-z-]*)(?:=(\S*))?(?:\s+|$)")
_PORT = re.compile(r"(\d+)(?:-\d+)?(?:/(?:tcp|udp|sctp))?", re.IGNORECASE)
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|git@)")
_GLOB_MAGIC = re.compile(r"[*?\[]")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REFERENCE = re.compile(
    rf"(?:{_HOST}(?:\.{_HOST})*(?::\d+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::\w[\w.-]{{0,127}})?"
)


@dataclass(frozen=True, slots=True)
class BuildStep:
    """What the build did with one instruction: ``outcome`` is e.g. ``copied 3 files``."""

    instruction: str
    line: int
    outcome: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A finished build: the image to record, a step per instruction, and the labels kept.

    ``reused`` is true when a snapshot of the same digest already existed and was kept.
    """

    image: LocalImage
    steps: tuple[BuildStep, ...]
    labels: dict[str, str]
    reused: bool


def dockerignore_spec(text: str) -> pathspec.GitIgnoreSpec:
    """The matcher of a ``.dockerignore``: paths relative to the build context, ``/``-separated.

    Docker anchors every pattern at the context root (``*.pyc`` excludes ``a.pyc``, not
    ``src/a.pyc``; ``**/*.pyc`` excludes both); ``!`` re-includes; a folder excludes its
    contents.

    Examples
    --------
    >>> spec = dockerignore_spec("*.pyc\\n**/__pycache__\\nbuild/\\n!build/keep.txt\\n")
    >>> [spec.match_file(p) for p in ["a.pyc", "src/a.pyc", "src/__pycache__/m.pyc"]]
    [True, False, True]
    >>> [spec.match_file(p) for p in ["build/out.bin", "build/keep.txt"]]
    [True, False]
    """
    patterns = (_docker_pattern(line) for line in text.splitlines())
    return pathspec.GitIgnoreSpec.from_lines(p for p in patterns if p is not None)


def check_tag(reference: str) -> str:
    """Validate an image tag given to ``chalk image build -t``; ``name`` means ``name:latest``.

    Examples
    --------
    >>> check_tag("ner"), check_tag("localhost:5000/team/ner:v1.2")
    ('ner:latest', 'localhost:5000/team/ner:v1.2')
    >>> check_tag("NER:v1")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: image tag 'NER:v1' is not valid: expected \
name[:tag] with a lowercase name (letters, digits, '.', '_', '-', '/'), e.g. ner:latest; \
try 'ner:v1'
    """
    if len(reference) <= 255 and _REFERENCE.fullmatch(reference):
        last = reference.rsplit("/", 1)[-1]
        return reference if ":" in last else f"{reference}:latest"
    message = (
        f"image tag {reference!r} is not valid: expected name[:tag] with a lowercase name "
        f"(letters, digits, '.', '_', '-', '/'), e.g. ner:latest"
    )
    name, colon, tag = reference.rpartition(":") if ":" in reference else (reference, "", "")
    fixed = f"{name.lower()}{colon}{tag}"
    if fixed != reference and _REFERENCE.fullmatch(fixed):
        message += f"; try {fixed!r}"
    raise ValidationError(message)


def build_image(context: Path, *, store_dir: Path, dockerfile: Path | None = None) -> BuildResult:
    """Snapshot ``context`` as its Dockerfile describes into ``store_dir/<digest hex>/rootfs``.

    COPY and ADD of local files are carried out; ENTRYPOINT, CMD, ENV, WORKDIR, EXPOSE and
    LABEL are recorded; FROM is not used and RUN not executed, and the steps say so, as they
    name every instruction the local backend cannot honour. ``.dockerignore`` is honoured.
    The digest covers the image's settings and every file's path, mode and content, so an
    unchanged context builds to the same digest (its snapshot is kept). A failed build
    leaves nothing in ``store_dir``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     context = Path(folder) / "model"
    ...     context.mkdir()
    ...     _ = (context / "model.py").write_text("def handler(event, context): ...\\n")
    ...     _ = (context / "Dockerfile").write_text(
    ...         "FROM python:3.11-slim\\nWORKDIR /app\\nCOPY model.py .\\n"
    ...         'ENTRYPOINT ["chalk-remote-call", "--handler", "model.handler"]\\n'
    ...     )
    ...     result = build_image(context, store_dir=Path(folder) / "images")
    ...     print(result.image.entrypoint, result.image.workdir)
    ...     print(*(f"{s.line} {s.outcome}" for s in result.steps), sep="\\n")
    ...     print((Path(result.image.snapshot_path) / "app" / "model.py").is_file())
    ('chalk-remote-call', '--handler', 'model.handler') /app
    1 not used: the project's Python runs the image
    2 working directory /app
    3 copied 1 file
    4 entrypoint ["chalk-remote-call", "--handler", "model.handler"]
    True
    """
    root = _context_root(context)
    path = _dockerfile_path(root, dockerfile)
    parsed = parse_dockerfile(_read_dockerfile(path), path=str(path))
    store = store_dir.resolve()
    store.mkdir(parents=True, exist_ok=True)
    files = _Context(root, _read_dockerignore(root), skip=(store,))
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=store))
    try:
        rootfs = scratch / "rootfs"
        rootfs.mkdir()
        builder = _Builder(parsed, files, rootfs)
        builder.run()
        digest = _digest(builder.config, rootfs)
        final = store / digest.removeprefix("sha256:")
        scratch.chmod(0o755)
        reused = _move_into_place(scratch, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    config = builder.config
    image = LocalImage(
        digest=digest,
        snapshot_path=str(final / "rootfs"),
        entrypoint=config.entrypoint,
        cmd=config.cmd,
        env=dict(config.env),
        workdir=config.workdir,
        exposed_port=config.exposed_port,
        created_at=dt.datetime.now(dt.UTC),
    )
    return BuildResult(image, tuple(builder.steps), dict(config.labels), reused)


# --- the build context -------------------------------------------------------------------


def _docker_pattern(line: str) -> str | None:
    """A ``.dockerignore`` line as a gitignore pattern anchored at the context root."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    text = posixpath.normpath(text[1:].strip() if negate else text).lstrip("/")
    if text in ("", "."):
        return None
    return f"{'!' if negate else ''}/{text}"


class _Context:
    """The build context's files as COPY sees them: minus .dockerignore and the project's
    own state (``.chalk``, the image store)."""

    def __init__(self, root: Path, ignore: pathspec.GitIgnoreSpec, *, skip: Sequence[Path]) -> None:
        self.root = root
        self._ignore = ignore
        self._skip = tuple(
            path.relative_to(root).as_posix() for path in skip if path.is_relative_to(root)
        )
        # Without re-inclusions ("!pattern") an excluded folder can be skipped whole.
        self.prunes = not any(p.include is False for p in ignore.patterns)

    def ignored(self, relative: str) -> bool:
        """Whether .dockerignore excludes ``relative``."""
        return bool(relative) and self._ignore.match_file(relative)

    def excluded(self, relative: str) -> bool:
        """Whether ``relative`` is out of the context: ignored, or the project's state."""
        return self.is_state(relative) or self.ignored(relative)

    def is_state(self, relative: str) -> bool:
        """Whether ``relative`` is the project's state (``.chalk``) or the image store."""
        if _STATE_DIR in relative.split("/"):
            return True
        return any(relative == s or relative.startswith(f"{s}/") for s in self._skip)

    def glob(self, pattern: str) -> list[str]:
        """Context paths matching a COPY source pattern (``*``, ``?``, ``[...]`` per segment)."""
        matches = [""]
        for segment in pattern.split("/"):
            if not _GLOB_MAGIC.search(segment):
                matches = [posixpath.join(m, segment) for m in matches]
                matches = [m for m in matches if os.path.lexists(self.root / m)]
                continue
            found = []
            for match in matches:
                folder = self.root / match
                if folder.is_dir():
                    names = sorted(os.listdir(folder))
                    found += [
                        posixpath.join(match, n) for n in names if fnmatch.fnmatchcase(n, segment)
                    ]
            matches = found
        return [m for m in matches if not self.excluded(m)]

    def walk(self, relative: str) -> Iterator[tuple[str, bool]]:
        """``(path, is_folder)`` under the folder ``relative``, sorted, not excluded.

        A folder that is excluded is still searched when a ``!pattern`` may re-include
        something in it, but is not itself listed.
        """
        folder = self.root / relative
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = posixpath.join(relative, entry.name) if relative else entry.name
            is_folder = entry.is_dir(follow_symlinks=False)
            if self.is_state(path):
                continue
            ignored = self.ignored(path)
            if not ignored:
                yield path, is_folder
            if is_folder and not (ignored and self.prunes):
                yield from self.walk(path)


def _context_root(context: Path) -> Path:
    if not context.is_dir():
        raise BuildError(
            f"build context {str(context)!r} is not a folder: expected a folder holding a "
            f"Dockerfile and the files it copies"
        )
    return context.resolve()


def _dockerfile_path(root: Path, dockerfile: Path | None) -> Path:
    if dockerfile is not None:
        if not dockerfile.is_file():
            raise BuildError(f"Dockerfile {str(dockerfile)!r} not found: expected a file there")
        return dockerfile
    for name in ("Dockerfile", "dockerfile"):
        if (root / name).is_file():
            return root / name
    raise BuildError(
        f"no Dockerfile in the build context {root}: expected {root / 'Dockerfile'}; "
        f"`chalk image build -f PATH` names another"
    )


def _read_dockerfile(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DockerfileError(f"{path}: not UTF-8 text: expected a Dockerfile") from None
    except OSError as error:
        raise BuildError(f"{path}: cannot read it ({error.strerror or error})") from None


def _read_dockerignore(root: Path) -> pathspec.GitIgnoreSpec:
    path = root / ".dockerignore"
    return dockerignore_spec(path.read_text(encoding="utf-8") if path.is_file() else "")


# --- building ----------------------------------------------------------------------------


@dataclass
class _Config:
    """The image's settings as the instructions so far have made them."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    exposed_port: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


class _Builder:
    """Carries out a parsed Dockerfile's last stage into ``rootfs``, a step per instruction."""

    def __init__(self, dockerfile: Dockerfile, context: _Context, rootfs: Path) -> None:
        self.config = _Config()
        self.steps: list[BuildStep] = []
        self._dockerfile = dockerfile
        self._context = context
        self._rootfs = rootfs
        self._global_args: dict[str, str] = {}
        self._args: dict[str, str] = {}
        self._in_stage = False
        self._current = Instruction("", "", 0)
        self._handlers: dict[str, Callable[[Instruction], str]] = {
            "ADD": self._add,
            "ARG": self._arg,
            "CMD": self._cmd,
            "COPY": self._copy,
            "ENTRYPOINT": self._entrypoint,
            "ENV": self._env,
            "EXPOSE": self._expose,
            "LABEL": self._label,
            "MAINTAINER": self._maintainer,
            "RUN": lambda instruction: RUN_NOT_EXECUTED,
            "WORKDIR": self._workdir,
        }

    def run(self) -> None:
        preamble, stages = self._stages()
        for instruction in preamble:
            self._do(instruction, self._global_arg)
        self._in_stage = True
        for number, stage in enumerate(stages):
            last = number == len(stages) - 1
            for instruction in stage:
                if instruction.keyword == "FROM":
                    self._do(instruction, self._from if number == 0 else _multi_stage)
                elif last:
                    self._do(instruction, self._handlers.get(instruction.keyword, _not_honoured))
                else:
                    self._do(instruction, _skipped)

    def _stages(self) -> tuple[list[Instruction], list[list[Instruction]]]:
        """The instructions before the first FROM (ARGs only) and each stage's."""
        instructions = list(self._dockerfile.instructions)
        starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
        if not starts:
            return [], [instructions]
        preamble = instructions[: starts[0]]
        for instruction in preamble:
            if instruction.keyword != "ARG":
                self._current = instruction
                raise self._syntax(
                    f"{instruction.keyword} comes before FROM: expected FROM first "
                    f"(only ARG may precede it)"
                )
        bounds = [*starts, len(instructions)]
        return preamble, [instructions[a:b] for a, b in itertools.pairwise(bounds)]

    def _do(self, instruction: Instruction, handler: Callable[[Instruction], str]) -> None:
        self._current = instruction
        try:
            outcome = handler(instruction)
        except WordError as error:
            raise self._syntax(str(error)) from None
        except OSError as error:
            raise self._failure(
                f"{instruction.keyword} failed: {error.strerror or error}"
                + (f" ({error.filename})" if error.filename else "")
            ) from None
        self.steps.append(BuildStep(instruction.text, instruction.line, outcome))

    def _where(self) -> str:
        return f"{self._dockerfile.path}:{self._current.line}"

    def _syntax(self, message: str) -> DockerfileError:
        return DockerfileError(f"{self._where()}: {message}")

    def _failure(self, message: str) -> BuildError:
        return BuildError(f"{self._where()}: {message}")

    def _variables(self) -> dict[str, str]:
        """What ``$NAME`` may name: a stage sees its ARGs and ENV (ENV wins), the lines
        before the first FROM only the ARGs declared there."""
        if not self._in_stage:
            return dict(self._global_args)
        return {**self._args, **self.config.env}

    def _expand(self, text: str) -> str:
        words = expand_words(text, self._variables(), escape=self._dockerfile.escape, split=False)
        return words[0] if words else ""

    def _words(self, text: str) -> list[str]:
        return expand_words(text, self._variables(), escape=self._dockerfile.escape)

    def _require_arguments(self, instruction: Instruction, example: str) -> None:
        if not instruction.arguments.strip():
            raise self._syntax(f"{instruction.keyword} needs arguments: expected e.g. {example}")

    # -- instructions that set the image's settings

    def _from(self, instruction: Instruction) -> str:
        self._require_arguments(instruction, "FROM python:3.11-slim")
        return FROM_UNUSED

    def _global_arg(self, instruction: Instruction) -> str:
        return self._declare(instruction, self._global_args)

    def _arg(self, instruction: Instruction) -> str:
        return self._declare(instruction, self._args)

    def _declare(self, instruction: Instruction, scope: dict[str, str]) -> str:
        self._require_arguments(instruction, "ARG VERSION=1.0")
        declared = []
        for word in raw_words(instruction.arguments, self._dockerfile.escape):
            name, has_value, raw = word.partition("=")
            if not VARIABLE_NAME.fullmatch(name):
                raise self._syntax(
                    f"ARG takes NAME[=default]: expected e.g. VERSION=1.0, got {word!r}"
                )
            value = self._expand(raw) if has_value else self._global_args.get(name)
            if value is None:
                declared.append(f"{name} (no value: chalk image build takes no --build-arg)")
                continue
            scope[name] = value
            declared.append(f"{name}={value}")
        return f"set {', '.join(declared)}"

    def _env(self, instruction: Instruction) -> str:
        pairs = self._pairs(instruction, "ENV PYTHONPATH=/app")
        self.config.env.update(pairs)
        return f"set {', '.join(f'{name}={value}' for name, value in pairs)}"

    def _label(self, instruction: Instruction) -> str:
        pairs = self._pairs(instruction, 'LABEL owner="nlp team"')
        self.config.labels.update(pairs)
        names = ", ".join(name for name, _ in pairs)
        return f"kept label{'s' if len(pairs) > 1 else ''} {names}"

    def _maintainer(self, instruction: Instruction) -> str:
        self._require_arguments(instruction, "MAINTAINER nlp@example.com")
        self.config.labels["maintainer"] = instruction.arguments
        return "kept as the label maintainer (MAINTAINER is deprecated: write LABEL maintainer=)"

    def _pairs(self, instruction: Instruction, example: str) -> list[tuple[str, str]]:
        """``NAME=VALUE`` pairs (values expanded before any is set), or legacy ``NAME VALUE``."""
        self._require_arguments(instruction, example)
        words = raw_words(instruction.arguments, self._dockerfile.escape)
        if "=" not in words[0]:
            parts = instruction.arguments.split(None, 1)
            if len(parts) < 2:
                raise self._syntax(
                    f"{instruction.keyword} {parts[0]} has no value: expected e.g. {example}"
                )
            return [(parts[0], self._expand(parts[1]))]
        pairs = []
        for word in words:
            name, has_value, raw = word.partition("=")
            if not has_value or not name:
                raise self._syntax(
                    f"{instruction.keyword} takes NAME=VALUE pairs: expected e.g. {example}, "
                    f"got {word!r}"
                )
            pairs.append((self._expand(name), self._expand(raw)))
        return pairs

    def _workdir(self, instruction: Instruction) -> str:
        path = self._expand(instruction.arguments)
        if not path:
            raise self._syntax("WORKDIR needs a path: expected e.g. WORKDIR /app")
        self.config.workdir = clean_container_path(posixpath.join(self.config.workdir, path))
        self._make_folders(self.config.workdir)
        return f"working directory {self.config.workdir}"

    def _expose(self, instruction: Instruction) -> str:
        words = self._words(instruction.arguments)
        if not words:
            raise self._syntax("EXPOSE needs a port: expected e.g. EXPOSE 8080")
        ports = [self._port(word) for word in words]
        if self.config.exposed_port is not None:
            return f"noted; the image's port stays {self.config.exposed_port} (the first exposed)"
        self.config.exposed_port = ports[0]
        others = " (the first exposed; the others are noted)" if len(ports) > 1 else ""
        return f"port {ports[0]}{others}"

    def _port(self, word: str) -> int:
        match = _PORT.fullmatch(word)
        if match is None or not 1 <= int(match[1]) <= 65535:
            raise self._syntax(
                f"EXPOSE takes PORT[/PROTOCOL]: expected e.g. 8080 or 8080/tcp, got {word!r}"
            )
        return int(match[1])

    def _entrypoint(self, instruction: Instruction) -> str:
        self.config.entrypoint, note = self._command(instruction)
        return f"entrypoint {json.dumps(list(self.config.entrypoint))}{note}"

    def _cmd(self, instruction: Instruction) -> str:
        self.config.cmd, note = self._command(instruction)
        return f"cmd {json.dumps(list(self.config.cmd))}{note}"

    def _command(self, instruction: Instruction) -> tuple[tuple[str, ...], str]:
        """Exec form (a JSON array of strings) as given; shell form runs through /bin/sh -c."""
        self._require_arguments(instruction, f'{instruction.keyword} ["python", "serve.py"]')
        text = instruction.arguments.strip()
        exec_form = _json_strings(text)
        if exec_form is not None:
            return tuple(exec_form), ""
        note = " (shell form)"
        if text.startswith("["):
            note = " (shell form: not a JSON array of strings; write double quotes for exec form)"
        return ("/bin/sh", "-c", text), note

    # -- COPY and ADD

    def _copy(self, instruction: Instruction) -> str:
        return self._transfer(instruction, _COPY_FLAGS)

    def _add(self, instruction: Instruction) -> str:
        return self._transfer(instruction, _ADD_FLAGS)

    def _transfer(self, instruction: Instruction, allowed: frozenset[str]) -> str:
        flags, rest = self._flags(instruction, allowed)
        refusal = _refusal(instruction, flags)
        if refusal is not None:
            return refusal
        words = self._copy_words(rest)
        if len(words) < 2:
            raise self._syntax(
                f"{instruction.keyword} needs a source and a destination: expected e.g. "
                f"{instruction.keyword} model.py /app/, got {rest!r}"
            )
        *sources, destination = words
        if len(sources) > 1 and not destination.endswith("/"):
            raise self._syntax(
                f"{instruction.keyword} of several sources needs a folder destination ending "
                f"in '/': expected e.g. {destination}/, got {destination!r}"
            )
        if instruction.keyword == "ADD" and (refusal := _url_refusal(sources)) is not None:
            return refusal
        found = [match for source in sources for match in self._sources(source)]
        paths = [self._context.root / path for path in found]
        if instruction.keyword == "ADD" and (refusal := _archive_refusal(paths)) is not None:
            return refusal
        copied = self._copy_matches(found, destination)
        notes = "".join(f"; --{name} ignored: {_IGNORED_FLAGS[name]}" for name in flags)
        return f"copied {copied} file{'' if copied == 1 else 's'}{notes}"

    def _flags(
        self, instruction: Instruction, allowed: frozenset[str]
    ) -> tuple[dict[str, str], str]:
        flags: dict[str, str] = {}
        rest = instruction.arguments.strip()
        while (match := _FLAG.match(rest)) is not None:
            name = match[1].lower()
            if name not in allowed:
                raise self._syntax(
                    f"unknown flag --{name} for {instruction.keyword}: expected one of "
                    f"{', '.join(f'--{f}' for f in sorted(allowed))}"
                )
            flags[name] = self._expand(match[2] or "")
            rest = rest[match.end() :]
        return flags, rest

    def _copy_words(self, text: str) -> list[str]:
        exec_form = _json_strings(text)
        if exec_form is not None:
            return [self._expand(word) for word in exec_form]
        return self._words(text)

    def _sources(self, source: str) -> list[str]:
        """The context paths a COPY source names: itself, or what its pattern matches."""
        # Docker clamps "../x" to the context's x.
        relative = clean_container_path(source).lstrip("/")
        if _GLOB_MAGIC.search(relative):
            matches = self._context.glob(relative)
        else:
            exists = os.path.lexists(self._context.root / relative)
            matches = [relative] if exists and not self._context.excluded(relative) else []
        if not matches:
            raise self._failure(self._missing(source, relative))
        for match in matches:
            real = (self._context.root / match).resolve()
            if not real.is_relative_to(self._context.root):
                raise self._failure(
                    f"{self._current.keyword} source {source!r} points outside the build "
                    f"context {self._context.root}: expected a path inside it"
                )
        return matches

    def _missing(self, source: str, relative: str) -> str:
        root = self._context.root
        message = f"{self._current.keyword} source {source!r} is not in the build context {root}"
        if os.path.lexists(root / relative) and self._context.ignored(relative):
            return f"{message}: .dockerignore excludes it"
        if os.path.lexists(root / relative):
            return f"{message}: the project's state ({_STATE_DIR}) is never part of an image"
        return f"{message}: expected a file or folder there (or a pattern matching one)"

    def _copy_matches(self, found: Sequence[str], destination: str) -> int:
        """Docker's COPY: a folder copies its contents; a file goes into a destination ending
        in '/' or naming a folder, else becomes the destination."""
        target = clean_container_path(posixpath.join(self.config.workdir, destination))
        into = (
            destination.endswith("/")
            or posixpath.basename(destination) in (".", "..")
            or len(found) > 1
            or self._host(target).is_dir()
        )
        copied = 0
        for relative in found:
            if (self._context.root / relative).is_dir():
                copied += self._copy_folder(relative, target)
            else:
                name = posixpath.basename(relative)
                destination = posixpath.join(target, name) if into else target
                self._copy_file(relative, destination, follow=True)
                copied += 1
        return copied

    def _copy_folder(self, relative: str, target: str) -> int:
        self._make_folders(target)
        copied = 0
        for path, is_folder in self._context.walk(relative):
            inside = posixpath.relpath(path, relative) if relative else path
            if is_folder:
                self._make_folders(posixpath.join(target, inside))
            else:
                self._copy_file(path, posixpath.join(target, inside), follow=False)
                copied += 1
        return copied

    def _copy_file(self, relative: str, container_path: str, *, follow: bool) -> None:
        """Copy one file with its mode bits; a symlink met inside a folder stays a symlink."""
        source = self._context.root / relative
        self._make_folders(posixpath.dirname(container_path))
        destination = self._host(container_path)
        if destination.is_symlink():
            destination.unlink()
        elif destination.is_dir():
            raise self._failure(
                f"{self._current.keyword} would put the file {relative!r} where the image has "
                f"the folder {container_path}: expected a destination ending in '/'"
            )
        if source.is_symlink() and not follow:
            os.symlink(os.readlink(source), destination)
            return
        shutil.copyfile(source, destination)
        destination.chmod(stat.S_IMODE(source.stat().st_mode))

    def _make_folders(self, container_path: str) -> None:
        """Create ``container_path`` in rootfs, never through a symlink (it could lead out)."""
        folder = self._rootfs
        for part in clean_container_path(container_path).split("/")[1:]:
            folder = folder / part
            if folder.is_symlink():
                raise self._failure(
                    f"{self._current.keyword} destination {container_path} passes through the "
                    f"symlink {folder.relative_to(self._rootfs).as_posix()}: not supported here"
                )
            if not folder.exists():
                folder.mkdir()
            elif not folder.is_dir():
                raise self._failure(
                    f"{container_path} needs a folder where the image has the file "
                    f"/{folder.relative_to(self._rootfs).as_posix()}"
                )

    def _host(self, container_path: str) -> Path:
        return self._rootfs.joinpath(*clean_container_path(container_path).split("/")[1:])


def _multi_stage(instruction: Instruction) -> str:
    return _MULTI_STAGE


def _skipped(instruction: Instruction) -> str:
    return _SKIPPED


def _not_honoured(instruction: Instruction) -> str:
    return f"not honoured: {_NOT_HONOURED[instruction.keyword]}"


def _refusal(instruction: Instruction, flags: Mapping[str, str]) -> str | None:
    """Why a COPY or ADD is not carried out at all, if it is not."""
    for name, why in _UNHONOURED_FLAGS.items():
        if name in flags:
            value = f"={flags[name]}" if flags[name] else ""
            return f"not honoured: {instruction.keyword} --{name}{value} {why}"
    if instruction.heredocs:
        return "not honoured: heredoc sources; put the text in a file in the build context"
    return None


def _url_refusal(sources: Sequence[str]) -> str | None:
    """An ADD that would download: the local backend fetches nothing."""
    for source in sources:
        if _URL.match(source):
            return (
                f"not honoured: ADD of a URL ({source}); download it into the build context "
                f"and COPY it"
            )
    return None


def _archive_refusal(found: Sequence[Path]) -> str | None:
    """An ADD that would unpack a local tar archive, as Docker's does."""
    for path in found:
        if path.is_file() and tarfile.is_tarfile(path):
            return (
                f"not honoured: ADD of the tar archive {path.name} would unpack it; unpack it "
                f"into the build context and COPY the folder"
            )
    return None


def _json_strings(text: str) -> list[str] | None:
    """``text`` as a JSON array of strings (exec form), or None."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


# --- digests and the store ---------------------------------------------------------------


def _digest(config: _Config, rootfs: Path) -> str:
    """``sha256:`` of a canonical manifest: the image's settings and every path's content."""
    manifest = {
        "format": "scalegroup.local-image.v1",
        "config": {
            "entrypoint": list(config.entrypoint),
            "cmd": list(config.cmd),
            "env": config.env,
            "workdir": config.workdir,
            "exposedPort": config.exposed_port,
            "labels": config.labels,
        },
        "files": _manifest_entries(rootfs),
    }
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _manifest_entries(rootfs: Path) -> list[list[str | int]]:
    """Each path in rootfs as ``[container path, kind, ...]``: a file's mode bits and content
    hash, a symlink's target. Folder modes are left out: they follow the umask, not the
    context."""
    entries: list[list[str | int]] = []
    for folder, folders, files in os.walk(rootfs):
        for name in (*folders, *files):
            path = Path(folder) / name
            container_path = "/" + path.relative_to(rootfs).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries.append([container_path, "symlink", os.readlink(path)])
            elif stat.S_ISDIR(info.st_mode):
                entries.append([container_path, "folder"])
            else:
                entries.append([container_path, "file", stat.S_IMODE(info.st_mode), _sha256(path)])
    return sorted(entries, key=lambda entry: str(entry[0]))


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _move_into_place(scratch: Path, final: Path) -> bool:
    """Rename the finished build to its digest's folder; True when that snapshot existed."""
    if final.exists():
        return True
    try:
        scratch.rename(final)
    except OSError:
        if final.exists():  # a concurrent build of the same content got there first
            return True
        raise
    return False
