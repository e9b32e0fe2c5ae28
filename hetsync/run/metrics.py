"""Run outputs: metrics.jsonl records, summary.json, and the progress line.

Only the driver writes files; workers and the server return what they measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO


def write_atomic(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """`write(file)` to a temporary file, fsync, rename over `path`, then fsync the folder: a
    crash leaves the old file or the new, never half of one, and once this returns the new
    one is on disk under its name (so a file written before another that names it, like a
    snapshot before its checkpoint, is there whenever the other is)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb" if binary else "w") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_json_atomic(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, written as `write_atomic` does."""
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"))


class MetricsLog:
    """Appends one JSON record per line to metrics.jsonl and keeps them in memory.

    A resumed run keeps the first `keep` records (those a checkpoint covers) and continues the
    same file; the records after them describe work that was lost, and are returned in
    `dropped`. `listener` gets every record written from now on (TensorBoard's scalars)."""

    def __init__(self, path: Path | None, keep: int | None = None,
                 listener: Callable[[dict], None] | None = None):
        self.listener = listener
        self.records: list[dict] = []
        self.dropped: list[dict] = []
        if path is not None and keep is not None:
            lines = path.read_text().splitlines() if path.exists() else []
            self.records = [json.loads(line) for line in lines[:keep]]
            for line in lines[keep:]:
                with contextlib.suppress(json.JSONDecodeError):  # a line cut by the crash
                    self.dropped.append(json.loads(line))
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in lines[:keep]))
            os.replace(tmp, path)
        self._file = open(path, "a") if path is not None else None

    def write(self, kind: str, **fields: Any) -> dict:
        """Append `{kind, **fields}`, flushed at once so that a crash of the driver keeps it, and
        pass it to the listener; returns the record."""
        record = {"kind": kind, **fields}
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self.listener is not None:
            self.listener(record)
        return record

    def close(self) -> None:
        """Close metrics.jsonl; the records stay in memory."""
        if self._file is not None:
            self._file.close()


class Progress:
    """One status line: redrawn in place on a terminal, printed every few seconds otherwise."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None,
                 every_s: float = 5.0):
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr  # looked up now: tests and callers may swap it
        self.tty = self.stream.isatty()
        self.every_s = every_s
        self._last = 0.0

    def update(self, elapsed: float, iterations: int, samples: int, val_acc: float | None,
               loss: float | None, max_staleness: int, force: bool = False) -> None:
        """Redraw the line on a terminal; elsewhere print it if `every_s` has passed since the
        last, or `force`. `elapsed` in seconds; None figures show as dashes."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not (self.tty or force or now - self._last >= self.every_s):
            return
        self._last = now
        acc = f"{val_acc:.4f}" if val_acc is not None else "  -   "
        lss = f"{loss:.4f}" if loss is not None else "  -   "
        rate = samples / elapsed if elapsed > 0 else 0.0
        line = (f"[{elapsed:7.1f}s] it {iterations:>6}/{self.total} "
                f"({100 * iterations / self.total:5.1f}%)  loss {lss}  val_acc {acc}  "
                f"{rate:7.0f} samples/s  max staleness {max_staleness}")
        if self.tty:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line with a newline (on a terminal only)."""
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
