"""JSON log lines on stderr for the runtime server (one object per line, collector-friendly)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"timestamp", "severity", "logger", "message", ...extra}``.

    Examples
    --------
    >>> record = logging.makeLogRecord({"msg": "ready", "levelname": "INFO", "name": "x"})
    >>> sorted(json.loads(JsonFormatter().format(record)))
    ['logger', 'message', 'severity', 'timestamp']
    """

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_FIELDS
        )
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


def configure_logging(level: str) -> None:
    """Send every log record to stderr as JSON, replacing any handler set up before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
