"""Carrying out a Dockerfile's last stage into a snapshot, one step (and its outcome) per
instruction: COPY and ADD of local files happen, settings are recorded, the rest is named.
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chalk.deploy.local.build_context import GLOB_MAGIC, STATE_DIR, BuildContext
from chalk.deploy.local.build_outcomes import (
    ADD_FLAGS,
    COPY_FLAGS,
    FROM_UNUSED,
    IGNORED_FLAGS,
    RUN_NOT_EXECUTED,
    archive_refusal,
    flag_refusal,
    multi_stage,
    not_honoured,
    skipped,
    url_refusal,
)
from chalk.deploy.local.dockerfile import (
    VARIABLE_NAME,
    BuildError,
    Dockerfile,
    DockerfileError,
    Instruction,
    WordError,
    expand_words,
    raw_words,
)
from chalk.deploy.local.image_runtime import clean_container_path

__all__ = ["FROM_UNUSED", "RUN_NOT_EXECUTED", "BuildStep", "ImageBuilder", "ImageConfig"]

_FLAG = re.compile(r"--([A-Za-z][A-Za-z-]*)(?:=(\S*))?(?:\s+|$)")
_PORT = re.compile(r"(\d+)(?:-\d+)?(?:/(?:tcp|udp|sctp))?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BuildStep:
    """What the build did with one instruction: ``outcome`` is e.g. ``copied 3 files``."""

    instruction: str
    line: int
    outcome: str


@dataclass
class ImageConfig:
    """The image's settings as the instructions so far have made them."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    exposed_port: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


class ImageBuilder:
    """Carries out a parsed Dockerfile's last stage into ``rootfs``, a step per instruction."""

    def __init__(self, dockerfile: Dockerfile, context: BuildContext, rootfs: Path) -> None:
        self.config = ImageConfig()
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
                    self._do(instruction, self._from if number == 0 else multi_stage)
                elif last:
                    self._do(instruction, self._handlers.get(instruction.keyword, not_honoured))
                else:
                    self._do(instruction, skipped)

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
        return self._transfer(instruction, COPY_FLAGS)

    def _add(self, instruction: Instruction) -> str:
        return self._transfer(instruction, ADD_FLAGS)

    def _transfer(self, instruction: Instruction, allowed: frozenset[str]) -> str:
        flags, rest = self._flags(instruction, allowed)
        refusal = flag_refusal(instruction, flags)
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
        if instruction.keyword == "ADD" and (refusal := url_refusal(sources)) is not None:
            return refusal
        found = [match for source in sources for match in self._sources(source)]
        paths = [self._context.root / path for path in found]
        if instruction.keyword == "ADD" and (refusal := archive_refusal(paths)) is not None:
            return refusal
        copied = self._copy_matches(found, destination)
        notes = "".join(f"; --{name} ignored: {IGNORED_FLAGS[name]}" for name in flags)
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
        if GLOB_MAGIC.search(relative):
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
            return f"{message}: the project's state ({STATE_DIR}) is never part of an image"
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
