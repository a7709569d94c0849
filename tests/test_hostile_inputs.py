"""Bad input, all of it: every malformed or hostile file of the corpus gets its own specific error, quickly,
through the library readers, `python -m mammo_sae.data check` and an extraction run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import hostile_files
import numpy as np
import pytest
from dicom_fixtures import write_test_image
from hostile_files import Hostile, build_corpus
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

import mammo_sae.data.dicom.read as read_module
from mammo_sae import extract
from mammo_sae.core.errors import DataError
from mammo_sae.data import __main__ as data_cli
from mammo_sae.data.dicom import (
    DecodeError,
    DicomReadError,
    MalformedDicomError,
    NotMammogramError,
    SuspiciousFileError,
    TruncatedDicomError,
    privacy,
    read_mammogram,
)
from mammo_sae.data.png import decode_png
from mammo_sae.data.preprocess import preprocess_mammogram

ISSUE_KINDS = (  # the kinds the issue names, by corpus file name
    "cut-in-file-meta.dcm", "wrong-magic.dcm", "modality-ct.dcm", "absurd-rows-columns.dcm",
    "absurd-frames.dcm", "bits-allocated-12.dcm", "jpeg2000-garbage.dcm", "no-transfer-syntax.dcm",
    "really-text.png", "preamble-windows-exe.dcm", "huge-comment.dcm",
)  # fmt: skip


@pytest.fixture(scope="module")
def originals_bytes(tmp_path_factory: pytest.TempPathFactory) -> hostile_files.Originals:
    """The valid files the corpus is cut from."""
    return hostile_files.write_originals(tmp_path_factory.mktemp("hostile-originals"))


@pytest.fixture(scope="module")
def corpus(originals_bytes: hostile_files.Originals) -> list[Hostile]:
    return build_corpus(originals_bytes)


@pytest.fixture(scope="module")
def corpus_dir(corpus: list[Hostile], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for entry in corpus:
        (folder / entry.name).write_bytes(entry.data)
    return folder


def read_like_the_app(entry: Hostile) -> None:
    """The upload page's route: PNG bytes to the PNG decoder, anything else to the DICOM reader."""
    if entry.is_png:
        decode_png(entry.data, entry.name)
    else:
        read_mammogram(entry.data, name=entry.name)


def mismatch(entry: Hostile, error: BaseException | None) -> str | None:
    """Why ``error`` is not the entry's specific error (None when it is)."""
    if error is None:
        return f"{entry.name}: read without error"
    text = str(error)
    if type(error) is not entry.error:
        return f"{entry.name}: {type(error).__name__} instead of {entry.error.__name__}: {text}"
    if not re.search(entry.message, text):
        return f"{entry.name}: message does not match {entry.message!r}: {text}"
    if "\n" in text:
        return f"{entry.name}: message spans several lines: {text!r}"
    return None


def test_the_corpus_holds_every_kind_the_issue_names(corpus: list[Hostile]) -> None:
    names = {entry.name for entry in corpus}
    assert len(corpus) >= 25
    assert set(ISSUE_KINDS) <= names, set(ISSUE_KINDS) - names
    assert sum(entry.name.startswith("cut") for entry in corpus) >= 6, "truncated at many offsets"
    assert all(issubclass(entry.error, DataError) for entry in corpus)


def test_each_file_gets_its_specific_error_from_the_library(corpus: list[Hostile]) -> None:
    problems = []
    for entry in corpus:
        error = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read_like_the_app(entry)
        except DataError as caught:
            error = caught
            if entry.name not in str(caught):
                problems.append(f"{entry.name}: the message does not name the file: {caught}")
        problems.append(mismatch(entry, error))
    assert [p for p in problems if p] == []


def test_the_check_command_prints_one_line_per_refused_file(
    corpus: list[Hostile], corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(corpus_dir / entry.name) for entry in corpus]
    assert data_cli.main(["check", *paths]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and "Traceback" not in captured.err
    assert len(lines) == len(corpus), captured.err
    problems = []
    for entry, path, line in zip(corpus, paths, lines, strict=True):
        if not line.startswith(f"error: {path}: ") or not re.search(entry.message, line):
            problems.append(f"{entry.name}: {line}")
    assert problems == []


def test_the_check_command_as_a_process_exits_2_with_one_clear_line(
    originals_bytes: hostile_files.Originals, corpus_dir: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.dcm"
    good.write_bytes(originals_bytes.explicit)
    bomb = corpus_dir / "jpeg2000-size-bomb.dcm"
    result = subprocess.run(
        [sys.executable, "-m", "mammo_sae.data", "check", str(good), str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == f"{good}: ok, 96 x 80 MONOCHROME2 MG, Explicit VR Little Endian\n"
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "codestream declares 60000 x 60000 pixels" in result.stderr


@pytest.mark.slow
def test_an_extraction_skips_each_hostile_file_with_its_message(
    corpus: list[Hostile], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mammo_sae.data import VindrIndex
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset

    dicoms = [entry for entry in corpus if not entry.is_png]
    root = tmp_path / "phantoms"
    studies = len(dicoms) // 4 + 1  # the last images stay valid
    generate_dataset(root, PhantomConfig(studies=studies, seed=2, height=160, width=128), workers=1)
    images = VindrIndex.load(root).images
    victims = dict(zip(images["image_id"], dicoms, strict=False))
    for image_id, path in zip(images["image_id"], images["path"], strict=True):
        if image_id in victims:
            Path(path).write_bytes(victims[image_id].data)
    argv = ["--data", str(root), "--out", str(tmp_path / "stores"), "--backbone", "timm:resnet18"]
    code = extract.main(
        [*argv, "--split", "all", "--frame-size", "128x80", "--workers", "0", "--no-progress"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert set(summary["skipped"]) == set(victims)
    problems = [
        f"{entry.name}: {summary['skipped'][image_id]}"
        for image_id, entry in victims.items()
        if not re.search(entry.message, summary["skipped"][image_id])
    ]
    assert problems == []
    assert summary["images_in_store"] == len(images) - len(victims)


def test_the_new_error_classes_are_read_errors() -> None:
    assert issubclass(MalformedDicomError, DicomReadError) and issubclass(SuspiciousFileError, DicomReadError)


# --- regressions: one per reader bug this corpus and the fuzzers found ---------------------------------


def no_decoding(*args: object, **kwargs: object) -> None:
    raise AssertionError("the file got as far as decoding")


@pytest.mark.parametrize(
    ("original", "declare"), [("j2k", hostile_files.j2k_declaring), ("ljpeg", hostile_files.jpeg_declaring)]
)
def test_a_codestream_claiming_a_huge_image_is_refused_before_any_decoder_allocates_it(
    originals_bytes: hostile_files.Originals,
    monkeypatch: pytest.MonkeyPatch,
    original: str,
    declare: Callable,
) -> None:
    """Was: openjpeg allocated what a 12 KB file's SIZ marker claimed (20000 x 20000: 2.4 GB, 10 s)."""
    monkeypatch.setattr(read_module, "decode_pixels", no_decoding)
    with pytest.raises(DecodeError, match=r"declares 30000 x 20000 pixels but Rows x Columns is 96 x 80"):
        read_mammogram(declare(getattr(originals_bytes, original), 30000, 20000), name="bomb.dcm")


def test_a_deflate_bomb_is_refused_before_pydicom_inflates_it(
    originals_bytes: hostile_files.Originals, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: pydicom inflated the whole data set in memory (a 1 MB file could demand 1 GB)."""
    monkeypatch.setattr(read_module, "dcmread", no_decoding)
    with pytest.raises(SuspiciousFileError, match=r"inflates to more than 467,108,864 bytes"):
        read_mammogram(hostile_files.deflate_bomb(originals_bytes.deflated), name="bomb.dcm")


def test_a_header_full_of_short_private_strings_fails_fast(
    originals_bytes: hostile_files.Originals, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: every harvested string was tried on every message (a regex each): 25 s for a 0.9 MB file."""
    rng = np.random.default_rng(0)

    def add_runs(ds: Dataset) -> None:
        ds.add(DataElement(0x00090010, "LO", "ACME"))
        for i in range(15):  # 225,000 distinct-ish 3-character strings, inside the header text budget
            runs = rng.integers(0x21, 0x7F, size=(15000, 3), dtype=np.uint8)
            ds.add(
                DataElement(0x00091000 + i, "OB", np.hstack([runs, np.zeros((15000, 1), np.uint8)]).tobytes())
            )

    data = hostile_files.scrambled_codestream(hostile_files.rewritten(originals_bytes.j2k, add_runs))
    passes: list[str] = []
    real_sub = privacy.re.sub

    def counted_sub(pattern, *args, **kwargs):
        passes.append(pattern)
        return real_sub(pattern, *args, **kwargs)

    monkeypatch.setattr(privacy.re, "sub", counted_sub)
    with pytest.raises(DecodeError, match="decoding the JPEG 2000"):
        read_mammogram(data, name="runs.dcm")
    # only the secrets a message contains are scrubbed: a handful of passes, not one per harvested string
    assert len(passes) < 100, f"{len(passes)} regex passes for one message"


def test_a_file_meta_without_transfer_syntax_is_malformed_not_truncated(
    originals_bytes: hostile_files.Originals,
) -> None:
    """Was: "the file ends inside its DICOM header ... truncated" for a complete file."""
    with pytest.raises(MalformedDicomError, match=r"no TransferSyntaxUID") as error:
        read_mammogram(hostile_files.without_transfer_syntax(originals_bytes.explicit), name="a.dcm")
    assert "truncated" not in str(error.value)


def test_a_missing_modality_is_called_missing(originals_bytes: hostile_files.Originals) -> None:
    """Was: "Modality is 'malformed'" for a file without the element."""
    with pytest.raises(NotMammogramError, match=r"Modality is 'missing'"):
        read_mammogram(hostile_files.edited(originals_bytes.explicit, Modality=None), name="a.dcm")


@pytest.mark.parametrize("shape", [(96, 1), (1, 1), (3, 2)])
def test_a_breast_too_thin_to_extract_is_a_data_error(tmp_path: Path, shape: tuple[int, int]) -> None:
    """Was: a numpy ValueError out of the breast extraction, which crashed an extraction run and the
    upload page (both expect a MammoSaeError)."""
    picture = np.zeros((96, 80))
    picture[20 : 20 + shape[0], 40 : 40 + shape[1]] = 1.0
    write_test_image(tmp_path / "thin.dcm", intensity=picture)
    with pytest.raises(DataError, match=r"too narrow for Mammo-CLIP's breast extraction"):
        preprocess_mammogram(read_mammogram(tmp_path / "thin.dcm"), (64, 40))


def test_a_length_field_claiming_4_gb_is_read_from_disk_without_allocating_it(
    originals_bytes: hostile_files.Originals, tmp_path: Path
) -> None:
    """Was: pydicom's file read allocated the 4 GB a 16 KB file's Pixel Data length claimed (a MemoryError
    under a memory limit); the file is now parsed from memory, where a read returns only what is there."""
    path = tmp_path / "claims-4gb.dcm"
    path.write_bytes(hostile_files.pixel_length(originals_bytes.explicit, 0xFFFFFFF0))
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedDicomError, match="truncated in the pixel data"):
            read_mammogram(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak:,} bytes allocated"
