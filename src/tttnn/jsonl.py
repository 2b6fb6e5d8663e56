"""Append-only JSONL results that survive a kill: one line per finished document, flushed at once."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_records(path: str | os.PathLike, repair: bool = False) -> list[dict[str, Any]]:
    """All complete records of ``path``; a truncated last line (killed mid-write) is dropped.

    With ``repair`` the file is also cut back to its last complete line, so appends start clean.
    A bad line anywhere but at the end is corruption, not a kill, and raises.
    """
    p = Path(path)
    if not p.exists():
        return []
    raw = p.read_bytes()
    records: list[dict[str, Any]] = []
    good_end = 0
    pos = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        line = raw[pos:] if nl < 0 else raw[pos:nl]
        try:
            if nl < 0:
                raise ValueError("no newline: the write was cut off")
            records.append(json.loads(line))
        except ValueError as err:
            if nl >= 0 and raw[nl + 1 :].strip():
                raise ValueError(f"{p}: corrupt line {len(records) + 1}: {err}") from err
            log.warning("%s: dropping a truncated last line (%d bytes)", p, len(line))
            break
        pos = nl + 1
        good_end = pos
    if repair and good_end < len(raw):
        with open(p, "r+b") as fh:
            fh.truncate(good_end)
    return records


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record and fsync, so a kill loses at most the document in progress."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
