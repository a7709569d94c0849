"""A full disk or a read-only folder, for the files under one folder of this process.

Mounting a small tmpfs needs root and a read-only folder does not stop root, so the faults are injected
where Python touches files: ``open``/``io.open``/``os.fdopen`` hand out files whose writes fail with
ENOSPC once a byte budget is spent (as ``write()`` does on a full disk: no file name), and, for a
read-only file system, creating, writing, renaming or deleting anything there fails with EROFS. Reads
are never affected. ``read_only`` uses a real ``chmod 555`` when the tests do not run as root.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fnmatch
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
MESSAGES = {
    "full disk": "No space left on device",
    "read-only": "Read-only file system",
    "chmod": "Permission denied",
}


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _writes(mode: str) -> bool:
    return any(flag in mode for flag in "wax+")


class _FullFile:
    """A file whose writes spend the fault's byte budget, then fail as on a full disk."""

    def __init__(self, handle: Any, fault: FileSystemFault) -> None:
        self._handle, self._fault = handle, fault

    def write(self, data: Any) -> int:
        size = len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
        self._fault.spend(size)
        return self._handle.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._handle)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._handle.__exit__(*exc)


class FileSystemFault:
    """ENOSPC (after ``budget`` bytes) or EROFS for files under ``root`` whose name matches ``only``."""

    def __init__(self, root: Path, code: int, *, budget: int = 0, only: str = "*") -> None:
        self.root = os.path.realpath(root)
        self.code, self.budget, self.only = code, budget, only
        self.failures = 0

    def hits(self, path: Any) -> bool:
        if isinstance(path, int):
            path = _fd_path(path)
        elif isinstance(path, bytes):
            path = os.fsdecode(path)
        elif not isinstance(path, str | os.PathLike):
            return False
        full = os.path.realpath(os.fspath(path))
        inside = full == self.root or full.startswith(self.root + os.sep)
        return inside and fnmatch.fnmatch(os.path.basename(full), self.only)

    def error(self, path: Any = None) -> OSError:
        self.failures += 1
        return OSError(self.code, os.strerror(self.code), None if path is None else os.fspath(path))

    def spend(self, size: int) -> None:
        if size > self.budget:
            self.budget = 0
            raise self.error()  # write() on a full disk names no file
        self.budget -= size

    # --- the patched functions ---------------------------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FileSystemFault:
        real_open, real_fdopen = builtins.open, os.fdopen

        def fault_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if _writes(mode) and self.hits(file):
                if self.code == errno.EROFS:
                    raise self.error(file)
                return _FullFile(real_open(file, mode, *args, **kwargs), self)
            return real_open(file, mode, *args, **kwargs)

        def fault_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_fdopen(fd, mode, *args, **kwargs)
            return _FullFile(handle, self) if _writes(mode) and self.hits(fd) else handle

        monkeypatch.setattr(builtins, "open", fault_open)
        monkeypatch.setattr(io, "open", fault_open)
        monkeypatch.setattr(os, "fdopen", fault_fdopen)
        if self.code == errno.EROFS:
            self._install_read_only(monkeypatch)
        return self

    def _install_read_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = {name: getattr(os, name) for name in ("open", "mkdir", "unlink", "remove", "rmdir")}
        real |= {name: getattr(os, name) for name in ("replace", "rename")}

        def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & WRITE_FLAGS and self.hits(path):
                raise self.error(path)
            return real["open"](path, flags, *args, **kwargs)

        def guarded_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
            if self.hits(path) and not os.path.exists(path):
                raise self.error(path)
            real["mkdir"](path, *args, **kwargs)

        def guard(name: str) -> Any:
            def guarded(*paths: Any, **kwargs: Any) -> Any:
                folder = _fd_path(kwargs["dir_fd"]) if kwargs.get("dir_fd") is not None else ""
                if any(self.hits(os.path.join(folder, os.fspath(p))) for p in paths):
                    raise self.error(paths[0])
                return real[name](*paths, **kwargs)

            return guarded

        monkeypatch.setattr(os, "open", guarded_open)
        monkeypatch.setattr(os, "mkdir", guarded_mkdir)
        for name in ("unlink", "remove", "rmdir", "replace", "rename"):
            monkeypatch.setattr(os, name, guard(name))


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``folder`` read-only: a real ``chmod 555`` for a normal user (yields "chmod"), the EROFS fault
    for root, whom file modes do not stop (yields "read-only")."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield "chmod"
        finally:
            folder.chmod(mode)
    else:
        with monkeypatch.context() as patch:
            FileSystemFault(folder, errno.EROFS).install(patch)
            yield "read-only"


@contextlib.contextmanager
def full_disk(
    folder: Path, monkeypatch: pytest.MonkeyPatch, *, budget: int = 0, only: str = "*"
) -> Iterator[str]:
    """Writes under ``folder`` (to files named like ``only``) fail with ENOSPC after ``budget`` bytes."""
    with monkeypatch.context() as patch:
        FileSystemFault(folder, errno.ENOSPC, budget=budget, only=only).install(patch)
        yield "full disk"


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path (hidden files included)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
