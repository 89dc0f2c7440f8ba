"""A digest of everything a SQLite catalog file holds, to assert a command changed nothing."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

__all__ = ["catalog_digest"]


def catalog_digest(path: Path) -> str:
    """The SHA-256 of every row of every table of the SQLite file at ``path`` (tables by name,
    rows sorted); of its bytes when it is not a readable SQLite database; ``"absent"`` when
    there is no file. Opened read-only, so taking the digest changes nothing either."""
    if not path.exists():
        return "absent"
    digest = hashlib.sha256()
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return _bytes_digest(path)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        for table in tables:
            digest.update(f"table {table}\n".encode())
            rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
            for row in sorted(rows, key=repr):
                digest.update(repr(row).encode() + b"\n")
    except sqlite3.Error:
        return _bytes_digest(path)
    finally:
        connection.close()
    return digest.hexdigest()


def _bytes_digest(path: Path) -> str:
    return "bytes:" + hashlib.sha256(path.read_bytes()).hexdigest()
