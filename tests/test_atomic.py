"""Atomic writes: all or nothing, readable by others, no temporary files left behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from mammo_sae.core.atomic import atomic_open, atomic_write_bytes, atomic_write_text


def test_write_replaces_the_file_and_is_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("disk trouble")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from mammo_sae.core.atomic import _host_tag

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    target = tmp_path / "a.json"
    killed = tmp_path / f".a.json.{_host_tag()}-{int(dead.stdout)}.x1.tmp"
    live = tmp_path / f".a.json.{_host_tag()}-{os.getpid()}.x2.tmp"
    other_host = tmp_path / f".a.json.00000000-{int(dead.stdout)}.x3.tmp"
    for leftover in (killed, live, other_host):
        leftover.write_text("half")
    atomic_write_text(target, "whole")
    assert not killed.exists() and live.exists() and other_host.exists()


def test_a_write_error_names_the_file_being_written(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    with pytest.raises(OSError, match="No space left") as error, atomic_open(target, "wb"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
