"""The tests' lossless JPEG (SOF3, predictor 1) encoder decodes exactly with libjpeg, the runtime decoder;
without it the package's writer refuses JPEG Lossless (it ships no encoder: no command writes such files)."""

from __future__ import annotations

import libjpeg
import numpy as np
import pytest
from dicom_fixtures import smooth_intensity, write_test_image
from ljpeg_encoder import encode_lossless_jpeg

from mammo_sae.data.dicom import DicomEncoding
from mammo_sae.data.dicom import write as dicom_write
from mammo_sae.data.dicom.errors import DicomWriteError


@pytest.mark.parametrize("precision", [2, 8, 12, 16])
def test_random_images_round_trip(precision):
    rng = np.random.default_rng(precision)
    image = rng.integers(0, 1 << precision, size=(37, 53), dtype=np.uint16)
    image[:3] = 0
    image[3:6] = (1 << precision) - 1
    image[6, ::2] = (1 << precision) - 1  # full-scale jumps: the largest difference categories
    decoded = libjpeg.decode(encode_lossless_jpeg(image, precision))
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize(
    "image",
    [
        np.full((5, 7), 1234, np.uint16),  # one difference category only
        np.array([[0, 65535, 0], [65535, 0, 65535]], np.uint16),  # difference 32768: SSSS 16, no extra bits
        np.zeros((1, 1), np.uint16),
        np.arange(300, dtype=np.uint16).reshape(1, 300),  # one row
        np.arange(300, dtype=np.uint16).reshape(300, 1),  # one column
    ],
)
def test_edge_cases_round_trip(image):
    np.testing.assert_array_equal(libjpeg.decode(encode_lossless_jpeg(image, 16)), image)


def test_smooth_images_compress():
    image = np.rint(smooth_intensity((128, 128)) * 4095).astype(np.uint16)
    codestream = encode_lossless_jpeg(image, 12)
    assert len(codestream) < image.nbytes * 0.75
    assert codestream[:4] == b"\xff\xd8\xff\xc3" and codestream[-2:] == b"\xff\xd9"


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="values must lie in"):
        encode_lossless_jpeg(np.full((2, 2), 4096, np.uint16), 12)
    with pytest.raises(ValueError, match="2-D"):
        encode_lossless_jpeg(np.zeros((2, 2, 2), np.uint16), 12)
    with pytest.raises(ValueError, match="precision"):
        encode_lossless_jpeg(np.zeros((2, 2), np.uint16), 17)


def test_the_package_writes_jpeg_lossless_only_with_a_registered_encoder(tmp_path, monkeypatch):
    encoding = DicomEncoding(transfer_syntax="jpeg-lossless")
    stored = write_test_image(tmp_path / "a.dcm", encoding)  # conftest registered the tests' encoder
    assert stored.size and (tmp_path / "a.dcm").is_file()
    monkeypatch.setattr(dicom_write, "FRAME_ENCODERS", {})
    with pytest.raises(DicomWriteError, match="mammo-sae ships none"):
        write_test_image(tmp_path / "b.dcm", encoding)
    assert not (tmp_path / "b.dcm").exists()
