"""The tuning journal file (Optuna's ``JournalFileBackend``), kept readable after a kill or a full disk.

A process killed while it appends, or a disk that fills up, leaves a half-written last record: a line without its
line end. Optuna reads past such a tail, but the next record is appended to the same line, and from then on every
read of the journal fails with a decode error, which loses every study of the suite. So the journal is opened with
:class:`TailCuttingLock` as its lock: Optuna's own journal file lock (the same lock file, so every Optuna process
writing the file waits for it) which, once held, cuts a torn tail back to the last complete record before Optuna
appends. Under the lock nobody else writes, so the cut is safe with any number of workers on one machine or on a
shared file system, and it happens wherever a tail is torn: before the first write of a ``qbench tune`` and when a
worker dies mid-write while others go on. The original is kept as ``<journal>.bak`` and one log line names both
files. A journal corrupt anywhere else is one error line naming the file, the line and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from ..errors import QbenchError
from ..results import atomic_write_bytes

__all__ = ["open_journal", "TailCuttingLock"]

_CHUNK = 1 << 16


def _torn_tail_size(path: Path) -> int:
    """The number of bytes after the journal's last line end (0: it ends with a complete record, or is empty)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return 0
        f.seek(end - 1)
        if f.read(1) == b"\n":  # the usual case, checked before every append
            return 0
        position = end
        while position > 0:
            start = max(0, position - _CHUNK)
            f.seek(start)
            chunk = f.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return end - (start + newline + 1)
            position = start
        return end


def _backup_path(path: Path) -> Path:
    """``<journal>.bak``, or ``<journal>.<n>.bak`` when earlier repairs left theirs."""
    candidate, n = path.with_name(f"{path.name}.bak"), 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}.bak")
    return candidate


def _cut_torn_tail(path: Path, log: Callable[[str], None]) -> Path | None:
    """Truncate a torn last record, keeping the original as a backup; returns the backup's path, None when the
    journal was whole. Call it only while holding the journal's lock."""
    torn = _torn_tail_size(path)
    if not torn:
        return None
    backup = _backup_path(path)
    try:
        atomic_write_bytes(backup, path.read_bytes())
        with open(path, "r+b") as f:
            f.truncate(f.seek(0, os.SEEK_END) - torn)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise QbenchError(f"cannot repair the torn last record of tuning journal {path} ({exc.strerror or exc}); "
                          f"free some disk space and re-run") from None
    log(f"tuning journal {path}: cut a torn last record ({torn} bytes, left by a killed process or a full disk); "
        f"the original is kept as {backup}")
    return backup


class TailCuttingLock(JournalFileSymlinkLock):
    """Optuna's journal file lock that cuts a torn last record once it is held (see the module doc). Every append
    of ``JournalFileBackend`` runs under it, so nothing is ever written after a half-written line."""

    def __init__(self, path: Path, log: Callable[[str], None]):
        super().__init__(str(path))
        self.journal, self.log = Path(path), log

    def acquire(self) -> bool:
        super().acquire()
        try:
            _cut_torn_tail(self.journal, self.log)
        except BaseException:
            self.release()
            raise
        return True


def open_journal(path: Path, *, log: Callable[[str], None] = print) -> optuna.storages.JournalStorage:
    """The journal storage at ``path`` (created if missing), its torn tail cut first; a journal that still cannot
    be read raises one line naming the corrupt line and the fix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = TailCuttingLock(path, log)
    backend = JournalFileBackend(str(path), lock_obj=lock)  # creates the file
    if _torn_tail_size(path):  # cut it now, not at the first write: the log says so before anything else
        lock.acquire()
        lock.release()
    try:
        return optuna.storages.JournalStorage(backend)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, Optuna's "Invalid log format."
        raise QbenchError(_corrupt_message(path, exc)) from None


def _corrupt_message(path: Path, exc: ValueError) -> str:
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                json.loads(line)
                continue
            except UnicodeDecodeError:
                what = "not UTF-8 text"
            except json.JSONDecodeError:
                what = "not a JSON record"
            return (f"tuning journal {path} is corrupt at line {number} ({what}), not only at its end; keep the "
                    f"records before it (head -n {number - 1} {path} > fixed.log, then put fixed.log in its place) "
                    f"or move the file away to start the suite's studies afresh")
    reason = " ".join(str(exc).split())[:200]
    return f"tuning journal {path} cannot be read ({reason}); move it away to start the suite's studies afresh"
