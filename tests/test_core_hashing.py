"""The one place for content hashes, canonical JSON and file checks (mammo_sae.core.hashing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mammo_sae.core.hashing import (
    NotPlainJsonError,
    canonical_json,
    check_files,
    file_record,
    sha256_file,
    sha256_json,
    strict_json_text,
)


def test_canonical_json_is_key_order_free_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": [np.int64(2), np.float32(0.5)]}) == '{"a":[2,0.5],"b":1}'
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})
    with pytest.raises(NotPlainJsonError, match="plain JSON"):
        canonical_json({"x": math.nan})
    with pytest.raises(NotPlainJsonError):
        canonical_json({"x": object()})


def test_strict_json_text_writes_null_for_undefined_numbers() -> None:
    text = strict_json_text({"auroc": math.nan, "gap": np.float64(-math.inf), "ok": [1.5, np.nan]})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auroc": None, "gap": None, "ok": [1.5, None]}


def test_check_files_names_every_missing_resized_and_changed_file(tmp_path: Path) -> None:
    for name in ("a.bin", "b.bin", "c.bin", "d.bin"):
        (tmp_path / name).write_bytes(name.encode() * 100)
    records = {name: file_record(tmp_path / name) for name in ("a.bin", "b.bin", "c.bin", "d.bin")}
    assert records["a.bin"]["sha256"] == sha256_file(tmp_path / "a.bin")
    assert check_files(tmp_path, records, hashes=True) == {}
    (tmp_path / "a.bin").unlink()
    (tmp_path / "b.bin").write_bytes(b"short")
    (tmp_path / "c.bin").write_bytes(b"x" * len(b"c.bin" * 100))  # same size, other bytes
    problems = check_files(tmp_path, records, hashes=True, what="metadata.json")
    assert set(problems) == {"a.bin", "b.bin", "c.bin"}
    assert "missing" in problems["a.bin"] and "metadata.json says 500" in problems["b.bin"]
    assert "sha256" in problems["c.bin"]
    assert set(check_files(tmp_path, records, hashes=False)) == {"a.bin", "b.bin"}  # sizes only
