"""Atomic file writes: a temporary file in the target folder, flushed, then renamed over the target.

A reader sees either the old file or the new one, never a partial write; a failed write leaves the old
file untouched and no temporary file behind. A writer killed mid-write (SIGKILL, power loss) can not
clean up, so its temporary file is named after its machine and process and the next write of the same
target removes it once that process is gone.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

FILE_MODE = 0o644


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of ``target`` left by killed writers on this machine; returns them.

    Temporaries are ``.<name>.<host>-<pid>.<random>.tmp``; one whose process still runs (or that another
    machine wrote) is kept, so concurrent writers of the same file do not disturb each other."""
    target = Path(target)
    host, removed = _host_tag(), []
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        owner = leftover.name[len(target.name) + 2 :].split(".", 1)[0]
        tag, _, pid = owner.partition("-")
        if tag == host and pid.isdigit() and not _running(int(pid)):
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` when the block succeeds."""
    assert mode in ("w", "wb"), "atomic_open only writes whole files"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    prefix = f".{target.name}.{_host_tag()}-{os.getpid()}."
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    except OSError as error:  # a read-only or full folder: name the file that was to be written
        raise OSError(error.errno, error.strerror, str(target)) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(target)) from None  # write() names no file
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
