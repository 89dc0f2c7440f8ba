"""What one ``chalk serve`` runs with: address, workers, token, limits.

Built by the CLI; handed to each worker process as JSON in an environment variable, since
the HTTP server starts its workers by import string.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from chalk.common.bounds import check_bound
from chalk.common.errors import ChalkError, ValidationError

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MAX_BODY_BYTES",
    "SETTINGS_ENV",
    "ServerSettings",
    "ServerSettingsError",
    "check_bindable",
    "is_loopback",
    "read_token",
    "url_of",
]

SETTINGS_ENV: Final = "CHALK_SERVER_SETTINGS"
DEFAULT_MAX_BODY_BYTES: Final = 16 << 20
DEFAULT_DEADLINE_S: Final = 30.0
# chalk.engine.holds' defaults (DESIGN.md, "Scale to zero"), repeated: the settings load no
# engine (chalk serve --help stays light); tests/server/test_settings.py compares them.
DEFAULT_HOLD_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_HELD_CALLS: Final = 1000
# How old the server's idea of the active graph may get before it reads the catalog again.
DEFAULT_GRAPH_TTL_S: Final = 1.0
_MAX_PORT: Final = 65535


class ServerSettingsError(ChalkError, ValueError):
    """Settings ``chalk serve`` refuses to start with; the message says what to change."""


def _bounded(name: str, value: float, flag: str) -> None:
    """``value`` within the bound ``name`` (chalk.common.bounds), else an error naming ``flag``."""
    try:
        check_bound(name, value, what=flag)
    except ValidationError as error:
        raise ServerSettingsError(str(error)) from None


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """One server's settings; ``token`` None means no authentication (loopback only).

    Examples
    --------
    >>> settings = ServerSettings(project_dir="/srv/app", port=8123)
    >>> ServerSettings.from_json(settings.to_json()) == settings
    True
    """

    project_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    deadline_s: float = DEFAULT_DEADLINE_S
    graph_ttl_s: float = DEFAULT_GRAPH_TTL_S
    # How long a model call waits for a replica of a group with none ready, and how many
    # calls a worker holds so at once (chalk.engine.holds).
    hold_timeout_s: float = DEFAULT_HOLD_TIMEOUT_S
    max_held_calls: int = DEFAULT_MAX_HELD_CALLS
    # Each worker's in-process answer cache, in bytes; None: the engine's default
    # (chalk.engine.cache.DEFAULT_MAX_BYTES, not imported here: it would load polars).
    answer_cache_bytes: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= _MAX_PORT:
            raise ServerSettingsError(
                f"--port must be from 0 to {_MAX_PORT} (0: any free port), got {self.port}"
            )
        _bounded("workers", self.workers, "--workers")
        _bounded("max_body_bytes", self.max_body_bytes, "--max-body-bytes")
        _bounded("deadline_seconds", self.deadline_s, "--deadline")
        _bounded("hold_timeout_seconds", self.hold_timeout_s, "--hold-timeout")
        _bounded("max_held_calls", self.max_held_calls, "--max-held-calls")
        if self.answer_cache_bytes is not None:
            _bounded("answer_cache_bytes", self.answer_cache_bytes, "--answer-cache-bytes")
        if self.token is None and not is_loopback(self.host):
            raise ServerSettingsError(
                f"chalk serve refuses to listen on {self.host} without a token: anyone who "
                f"reaches that address could query features and call models. Expected "
                f"--token-file FILE (a file holding the bearer token clients send), or "
                f"--host 127.0.0.1"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        return cls(**json.loads(text))

    @classmethod
    def from_env(cls) -> ServerSettings:
        """The settings the parent process left for this worker."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise ServerSettingsError(
                f"{SETTINGS_ENV} is not set: expected the worker to be started by chalk serve"
            )
        return cls.from_json(text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address only this machine reaches.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("192.168.1.4")
    (False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def url_of(host: str, port: int) -> str:
    """The HTTP URL of ``host:port``, an IPv6 address in brackets.

    Examples
    --------
    >>> url_of("127.0.0.1", 8000), url_of("::1", 8000), url_of("[::1]", 8000)
    ('http://127.0.0.1:8000', 'http://[::1]:8000', 'http://[::1]:8000')
    """
    bare = host.strip("[]")
    return f"http://[{bare}]:{port}" if ":" in bare else f"http://{bare}:{port}"


def check_bindable(host: str, port: int) -> int:
    """The port ``host:port`` binds (the one the system picks for port 0); refuses, naming the
    address, when it cannot be bound (in use, not ours).

    Examples
    --------
    >>> import socket
    >>> with socket.socket() as taken:
    ...     taken.bind(("127.0.0.1", 0)); taken.listen()
    ...     check_bindable("127.0.0.1", taken.getsockname()[1])
    Traceback (most recent call last):
    ...
    chalk.server.settings.ServerSettingsError: cannot listen on 127.0.0.1:...
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the HTTP server binds: a port in TIME_WAIT after a restart is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise ServerSettingsError(
                f"cannot listen on {host}:{port}: {error.strerror}: expected a free port on an "
                f"address of this machine; pick another with --port or --host"
            ) from None
        return int(probe.getsockname()[1])


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace dropped); it must not be empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ServerSettingsError(
            f"--token-file {path}: cannot read it ({error.strerror}): expected a file holding "
            f"the bearer token"
        ) from None
    except UnicodeDecodeError:
        token = "\ufffd"  # refused below with any other character a header cannot carry
    if not token:
        raise ServerSettingsError(
            f"--token-file {path} is empty: expected the bearer token clients send"
        )
    if not all("!" <= character <= "~" for character in token):
        raise ServerSettingsError(
            f"--token-file {path} holds spaces, line breaks or characters other than visible "
            f"ASCII: expected one token clients can send in an Authorization header, such as "
            f"one `openssl rand -hex 32` prints"
        )
    return token
