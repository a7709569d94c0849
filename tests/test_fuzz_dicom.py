"""Fuzzing of the readers, deterministic (derandomized) and bounded for CI.

Hypothesis mutates valid phantoms (every transfer syntax the writer makes, full of identifying values) and
valid PNG frames: the readers may only raise their own error types, whose messages never quote an
identifying value. It also paints odd pictures into valid files (tiny, constant, a dot, a thin strip): what
the app and extraction do with them, reading then Mammo-CLIP preprocessing, may only end in a DataError.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from dicom_fixtures import identifying_tags, leaked, write_test_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom import (
    DicomEncoding,
    DicomReadError,
    display_image,
    intensity_to_stored,
    read_mammogram,
    write_mammogram,
)
from mammo_sae.data.png import decode_png
from mammo_sae.data.preprocess import model_input, preprocess_mammogram

SYNTAXES = ("explicit-little", "implicit-little", "deflated", "jpeg2000-lossless", "rle", "jpeg-lossless")
DICOM_CASES, PNG_CASES, PICTURE_CASES = 200, 100, 100
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])

Mutation = tuple[str, int, bytes]
KINDS = ("flip", "overwrite", "insert", "delete", "truncate", "extreme")
EXTREMES = (
    b"\x00\x00",
    b"\xff\xff",
    b"\xff\xff\xff\xff",
    b"\xf0\xff\xff\xff",
    b"\x00\x00\x00\x80",
    b"\xff\x7f",
)
LEVEL = st.floats(0, 1)
EXTENT = st.one_of(st.integers(1, 3), st.integers(1, 72))  # thin shapes are the hard ones


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def originals(folder: Path) -> dict[str, bytes]:
    """One valid file per transfer syntax (with identifying values to leak), and a PNG frame."""
    files = {}
    for syntax in SYNTAXES:
        write_test_image(
            folder / f"{syntax}.dcm", DicomEncoding(transfer_syntax=syntax), tags=identifying_tags()
        )
        files[syntax] = (folder / f"{syntax}.dcm").read_bytes()
    ok, png = cv2.imencode(".png", display_image(read_mammogram(folder / "explicit-little.dcm")))
    assert ok
    files["png"] = png.tobytes()
    return files


# --- byte mutations --------------------------------------------------------------------------------------


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    """One edit: flip, overwrite, insert, delete, truncate, or an extreme 2/4-byte value (lengths, sizes).

    Positions are drawn small-first, so headers get most of the edits; they wrap around the file."""
    kind = draw(st.sampled_from(KINDS))
    position = draw(st.integers(min_value=0, max_value=1 << 16))
    if kind == "extreme":
        payload = draw(st.sampled_from(EXTREMES))
    elif kind == "delete":
        payload = bytes(draw(st.integers(min_value=1, max_value=64)))
    else:
        payload = draw(st.binary(min_size=1, max_size=16))
    return kind, position, payload


def mutate(data: bytes, edits: list[Mutation]) -> bytes:
    """``data`` with each edit applied in turn (``delete`` removes as many bytes as its payload holds)."""
    for kind, position, payload in edits:
        at = position % max(len(data), 1)
        if kind == "flip" and data:
            data = data[:at] + bytes([data[at] ^ (payload[0] or 1)]) + data[at + 1 :]
        elif kind in ("overwrite", "extreme"):
            data = data[:at] + payload + data[at + len(payload) :]
        elif kind == "insert":
            data = data[:at] + payload + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(payload) :]
        elif kind == "truncate":
            data = data[:at]
    return data


def only_own_errors(read: Callable[[], object], own: type[Exception]) -> None:
    """Run ``read``; an ``own`` error must not quote identifying values; any other exception propagates."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            read()
        except own as error:
            assert leaked(str(error)) == [], str(error)
    assert leaked(" ".join(str(w.message) for w in caught)) == []


@settings(FUZZ, max_examples=DICOM_CASES)
@given(syntax=st.sampled_from(SYNTAXES), edits=st.lists(mutations(), min_size=1, max_size=4))
def test_mutated_dicoms_raise_only_read_errors(
    originals: dict[str, bytes], syntax: str, edits: list[Mutation]
):
    data = mutate(originals[syntax], edits)
    only_own_errors(lambda: read_mammogram(data, name="fuzzed.dcm"), DicomReadError)


@settings(FUZZ, max_examples=PNG_CASES)
@given(edits=st.lists(mutations(), min_size=1, max_size=3))
def test_mutated_pngs_raise_only_data_errors(originals: dict[str, bytes], edits: list[Mutation]):
    data = mutate(originals["png"], edits)
    only_own_errors(lambda: decode_png(data, "fuzzed.png"), DataError)


# --- odd pictures in valid files -------------------------------------------------------------------------


@st.composite
def pictures(draw: st.DrawFn) -> np.ndarray:
    """A small intensity image in [0, 1]: a background (often black), optional noise, and a few painted
    rectangles, often only 1 to 3 pixels thin (dots and strips)."""
    height, width = draw(st.integers(1, 72)), draw(st.integers(1, 72))
    background = draw(st.sampled_from((0.0, 0.1))) if draw(st.booleans()) else draw(LEVEL)
    picture = np.full((height, width), background)
    if draw(st.booleans()):
        picture = np.random.default_rng(draw(st.integers(0, 9))).random((height, width))
    for _ in range(draw(st.integers(0, 4))):
        y, x = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        picture[y : y + draw(EXTENT), x : x + draw(EXTENT)] = draw(LEVEL)
    return picture


@settings(FUZZ, max_examples=PICTURE_CASES)
@given(picture=pictures(), photometric=st.sampled_from(("MONOCHROME1", "MONOCHROME2")))
def test_odd_pictures_read_and_preprocess_or_raise_a_data_error(
    folder: Path, picture: np.ndarray, photometric: str
):
    path = folder / "picture.dcm"
    encoding = DicomEncoding(photometric=photometric)
    write_mammogram(
        path, intensity_to_stored(picture, encoding), laterality="L", view="CC", encoding=encoding
    )
    try:  # a refusal with its reason is fine; any other exception fails
        frame = model_input(preprocess_mammogram(read_mammogram(path), (64, 40)).png)
    except DataError as error:
        assert str(error).strip(), "a refusal must say why"
    else:
        assert frame.shape == (3, 64, 40) and frame.dtype == np.float32 and np.isfinite(frame).all()


def test_the_fuzz_profile_draws_the_same_bounded_cases_every_run(tmp_path: Path, monkeypatch) -> None:
    """CI runs a fixed number of cases, the same ones every time, and writes no example database."""
    monkeypatch.chdir(tmp_path)

    def draw_cases() -> list[bytes]:
        drawn: list[bytes] = []

        @settings(FUZZ, max_examples=7)
        @given(edits=st.lists(mutations(), min_size=1, max_size=3))
        def probe(edits: list[Mutation]) -> None:
            drawn.append(repr(edits).encode())

        probe()
        return drawn

    runs = [draw_cases(), draw_cases()]
    assert runs[0] == runs[1] and 0 < len(runs[0]) <= 7
    assert not (tmp_path / ".hypothesis").exists()
