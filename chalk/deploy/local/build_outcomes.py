"""What ``chalk image build`` says of the instructions it does not carry out as Docker would.

The local backend has no base image, runs no commands and downloads nothing: each such
instruction, stage or flag gets one line saying so, and why.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from chalk.deploy.local.dockerfile import Instruction

__all__ = [
    "ADD_FLAGS",
    "COPY_FLAGS",
    "FROM_UNUSED",
    "IGNORED_FLAGS",
    "RUN_NOT_EXECUTED",
    "archive_refusal",
    "flag_refusal",
    "multi_stage",
    "not_honoured",
    "skipped",
    "url_refusal",
]

# What the build says of every FROM and RUN: neither is carried out, and the user is told.
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
COPY_FLAGS: Final = frozenset({"from", "chown", "chmod", "link", "parents", "exclude"})
ADD_FLAGS: Final = frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"})
# Flags that change which files land where: honouring the copy without them would be wrong.
_UNHONOURED_FLAGS: Final = {
    "from": "copies from another stage or image, which chalk image build does not build; "
    "put the files in the build context and COPY them from there",
    "parents": "keeps the sources' parent folders; name each destination folder instead",
    "exclude": "filters the copied files; list them in .dockerignore instead",
}
# Flags whose effect the local backend cannot have, so the copy goes ahead without them.
IGNORED_FLAGS: Final = {
    "chown": "the files belong to the user running the controller",
    "chmod": "the files keep their modes from the build context",
    "link": "a snapshot has no layers",
    "checksum": "it checks downloads, and ADD downloads nothing here",
    "keep-git-dir": "it applies to git sources, and ADD clones nothing here",
}
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|git@)")


def multi_stage(instruction: Instruction) -> str:
    return _MULTI_STAGE


def skipped(instruction: Instruction) -> str:
    return _SKIPPED


def not_honoured(instruction: Instruction) -> str:
    return f"not honoured: {_NOT_HONOURED[instruction.keyword]}"


def flag_refusal(instruction: Instruction, flags: Mapping[str, str]) -> str | None:
    """Why a COPY or ADD is not carried out at all, if it is not."""
    for name, why in _UNHONOURED_FLAGS.items():
        if name in flags:
            value = f"={flags[name]}" if flags[name] else ""
            return f"not honoured: {instruction.keyword} --{name}{value} {why}"
    if instruction.heredocs:
        return "not honoured: heredoc sources; put the text in a file in the build context"
    return None


def url_refusal(sources: Sequence[str]) -> str | None:
    """An ADD that would download: the local backend fetches nothing."""
    for source in sources:
        if _URL.match(source):
            return (
                f"not honoured: ADD of a URL ({source}); download it into the build context "
                f"and COPY it"
            )
    return None


def archive_refusal(found: Sequence[Path]) -> str | None:
    """An ADD that would unpack a local tar archive, as Docker's does."""
    for path in found:
        if path.is_file() and tarfile.is_tarfile(path):
            return (
                f"not honoured: ADD of the tar archive {path.name} would unpack it; unpack it "
                f"into the build context and COPY the folder"
            )
    return None
