"""The DICOM reader: exact round trips for every transfer syntax, and one error class per kind of bad input."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from dicom_fixtures import SHAPE, identifying_tags, leaked, smooth_intensity, write_test_image
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import JPEGLSLossless

import mammo_sae.data.dicom.decode as decode_module
import mammo_sae.data.dicom.read as read_module
from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom import (
    TRANSFER_SYNTAXES,
    DecodeError,
    DicomEncoding,
    DicomReadError,
    ForProcessingWarning,
    ImageSizeError,
    MammogramDicom,
    MissingDecoderError,
    NoPixelDataError,
    NotDicomError,
    NotMammogramError,
    TruncatedDicomError,
    UnsupportedImageError,
    WindowPreset,
    read_mammogram,
)

LOSSLESS = ["explicit-little", "implicit-little", "deflated", "jpeg2000-lossless", "rle", "jpeg-lossless"]


def _needs_jpeg_ls_encoder(syntax: str) -> None:
    if syntax.startswith("jpeg-ls"):
        pytest.importorskip("jpeg_ls", reason="JPEG-LS test files need pyjpegls (requirements-dev.txt)")


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits", [12, 16])
@pytest.mark.parametrize("syntax", [*LOSSLESS, "jpeg-ls-lossless"])
def test_lossless_round_trip_is_exact(tmp_path, syntax, bits, photometric):
    _needs_jpeg_ls_encoder(syntax)
    encoding = DicomEncoding(photometric=photometric, bits_stored=bits, transfer_syntax=syntax)
    stored = write_test_image(tmp_path / "a.dcm", encoding)
    image = read_mammogram(tmp_path / "a.dcm")
    assert image.stored.shape == SHAPE
    np.testing.assert_array_equal(image.stored, stored)
    assert image.photometric == photometric
    assert image.bits_stored == bits
    assert image.metadata.transfer_syntax == TRANSFER_SYNTAXES[syntax].name


def test_lossy_jpeg2000_round_trip_is_close(tmp_path):
    encoding = DicomEncoding(transfer_syntax="jpeg2000", jpeg2000_ratio=10.0)
    stored = write_test_image(tmp_path / "a.dcm", encoding)
    decoded = read_mammogram(tmp_path / "a.dcm").stored.astype(np.float64)
    error = np.abs(decoded - stored) / 65535
    assert error.mean() < 0.01 and error.max() < 0.1
    assert not np.array_equal(decoded, stored)  # it is lossy, so the test compares what it claims to


def test_near_lossless_jpeg_ls_stays_within_its_error_bound(tmp_path):
    _needs_jpeg_ls_encoder("jpeg-ls")
    encoding = DicomEncoding(transfer_syntax="jpeg-ls-near-lossless", jpeg_ls_error=3)
    stored = write_test_image(tmp_path / "a.dcm", encoding)
    decoded = read_mammogram(tmp_path / "a.dcm").stored
    assert np.abs(decoded.astype(np.int64) - stored).max() <= 3


def test_jpeg_ls_decodes_with_the_runtime_plugin_pylibjpeg(tmp_path):
    _needs_jpeg_ls_encoder("jpeg-ls")
    stored = write_test_image(tmp_path / "a.dcm", DicomEncoding(transfer_syntax="jpeg-ls-lossless"))
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    decoded = get_decoder(JPEGLSLossless).as_array(ds, decoding_plugin="pylibjpeg")[0]
    np.testing.assert_array_equal(decoded, stored)


def test_jpeg_lossless_process_14_decodes(tmp_path):
    """Process 14 with any predictor (1.2.840.10008.1.2.4.57) covers the SV1 codestream the writer makes."""
    stored = write_test_image(tmp_path / "a.dcm", DicomEncoding(transfer_syntax="jpeg-lossless"))
    raw = (tmp_path / "a.dcm").read_bytes()
    assert raw.count(b"1.2.840.10008.1.2.4.70") == 1
    (tmp_path / "p14.dcm").write_bytes(raw.replace(b"1.2.840.10008.1.2.4.70", b"1.2.840.10008.1.2.4.57"))
    image = read_mammogram(tmp_path / "p14.dcm")
    assert image.metadata.transfer_syntax == "JPEG Lossless, Non-Hierarchical (Process 14)"
    np.testing.assert_array_equal(image.stored, stored)


def test_elements_after_the_pixel_data_are_not_mistaken_for_truncation(tmp_path):
    stored = write_test_image(tmp_path / "a.dcm")
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    ds.DigitalSignaturesSequence = Sequence([Dataset()])
    ds.DataSetTrailingPadding = bytes(6)
    ds.save_as(tmp_path / "a.dcm")
    np.testing.assert_array_equal(read_mammogram(tmp_path / "a.dcm").stored, stored)


def test_reader_keeps_no_dataset_and_exposes_display_parameters(tmp_path):
    encoding = DicomEncoding(
        windows=(WindowPreset(30000, 40000, "STANDARD"), WindowPreset(32000, 20000, "HARDER")),
        voi_lut_function="LINEAR_EXACT",
        voi_lut_sequence=True,
        rescale_slope=2.0,
        rescale_intercept=-5.0,
        pixel_padding_value=0,
        pixel_padding_range_limit=10,
    )
    write_test_image(tmp_path / "a.dcm", encoding, laterality="R", view="MLO")
    image = read_mammogram(tmp_path / "a.dcm")
    assert isinstance(image, MammogramDicom)
    assert not any(isinstance(v, Dataset) for v in vars(image).values())
    assert [w.name for w in image.window_presets] == ["STANDARD", "HARDER"]
    assert image.window_presets[1] == WindowPreset(32000.0, 20000.0, "HARDER")
    assert (image.rescale_slope, image.rescale_intercept) == (2.0, -5.0)
    assert (image.pixel_padding_value, image.pixel_padding_range_limit) == (0, 10)
    assert image.voi_lut_function == "LINEAR_EXACT"
    assert len(image.voi_luts) == 1 and image.voi_luts[0].bits == 16
    assert (image.metadata.laterality, image.metadata.view) == ("R", "MLO")
    assert "shape=(96, 80)" in repr(image)


def test_vindr_style_hex_uids_do_not_warn(tmp_path):
    hex_uid = "0a5d7c3e4f9b1e2d8c6a4b3f2e1d0c9b"
    write_test_image(tmp_path / "a.dcm", tags={"SOPInstanceUID": hex_uid, "StudyInstanceUID": hex_uid})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_mammogram(tmp_path / "a.dcm")
    assert [str(w.message) for w in caught] == []
    assert image.metadata.key is not None


def test_multiframe_is_allowed_when_not_expecting_a_mammogram(tmp_path):
    two_frames = np.vstack([smooth_intensity(seed=1), smooth_intensity(seed=2)])
    stored = write_test_image(
        tmp_path / "a.dcm", intensity=two_frames, tags={"Rows": SHAPE[0], "NumberOfFrames": 2}
    )
    image = read_mammogram(tmp_path / "a.dcm", expect_mammogram=False)
    np.testing.assert_array_equal(image.stored, stored.reshape(2, *SHAPE))


def test_for_processing_images_load_with_a_warning(tmp_path):
    stored = write_test_image(tmp_path / "a.dcm", DicomEncoding(presentation_intent="FOR PROCESSING"))
    with pytest.warns(ForProcessingWarning, match=r"not meant for display"):
        image = read_mammogram(tmp_path / "a.dcm")
    np.testing.assert_array_equal(image.stored, stored)


def test_raw_dataset_without_part10_header_is_read(tmp_path):
    write_test_image(tmp_path / "a.dcm")
    raw = (tmp_path / "a.dcm").read_bytes()
    meta_length = int.from_bytes(raw[140:144], "little")
    (tmp_path / "raw.dcm").write_bytes(raw[144 + meta_length :])
    np.testing.assert_array_equal(
        read_mammogram(tmp_path / "raw.dcm").stored, read_mammogram(tmp_path / "a.dcm").stored
    )


# --- bad input: one class each, and a message that says what to do -----------------------------------


def test_all_read_errors_are_data_errors():
    for cls in (NotDicomError, TruncatedDicomError, NoPixelDataError, NotMammogramError, MissingDecoderError,
                DecodeError, ImageSizeError, UnsupportedImageError):  # fmt: skip
        assert issubclass(cls, DicomReadError) and issubclass(cls, DataError)


def test_missing_file(tmp_path):
    with pytest.raises(DicomReadError, match=r"no such file"):
        read_mammogram(tmp_path / "nope.dcm")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + bytes(300), b"study_id,image_id\nabc,def\n" * 20])
def test_not_dicom(tmp_path, content):
    (tmp_path / "x.dcm").write_bytes(content)
    with pytest.raises(NotDicomError, match=r"not a DICOM file.*point to the .dicom"):
        read_mammogram(tmp_path / "x.dcm")


@pytest.mark.parametrize("keep", [200, 300, 600, 700])
def test_truncated_in_the_header(tmp_path, keep):
    write_test_image(tmp_path / "a.dcm")
    (tmp_path / "cut.dcm").write_bytes((tmp_path / "a.dcm").read_bytes()[:keep])
    with pytest.raises(TruncatedDicomError, match=r"truncated.*copy it again|header.*copy it again"):
        read_mammogram(tmp_path / "cut.dcm")


@pytest.mark.parametrize(
    "syntax", ["explicit-little", "implicit-little", "jpeg2000-lossless", "rle", "jpeg-lossless"]
)
@pytest.mark.parametrize("drop", [3, 500])
def test_truncated_in_the_pixel_data(tmp_path, syntax, drop):
    write_test_image(tmp_path / "a.dcm", DicomEncoding(transfer_syntax=syntax))
    (tmp_path / "cut.dcm").write_bytes((tmp_path / "a.dcm").read_bytes()[:-drop])
    with pytest.raises(TruncatedDicomError, match=r"copy it again"):
        read_mammogram(tmp_path / "cut.dcm")


def test_no_pixel_data(tmp_path):
    write_test_image(tmp_path / "a.dcm")
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(NoPixelDataError, match=r"no Pixel Data.*Digital Mammography"):
        read_mammogram(tmp_path / "nopix.dcm")


def test_wrong_modality_is_refused_unless_allowed(tmp_path):
    stored = write_test_image(tmp_path / "ct.dcm", tags={"Modality": "CT"})
    with pytest.raises(NotMammogramError, match=r"Modality is 'CT'.*allow_non_mg=True"):
        read_mammogram(tmp_path / "ct.dcm")
    np.testing.assert_array_equal(read_mammogram(tmp_path / "ct.dcm", allow_non_mg=True).stored, stored)


def test_missing_decoder_names_the_package_to_install(tmp_path, monkeypatch):
    write_test_image(tmp_path / "j.dcm", DicomEncoding(transfer_syntax="jpeg2000-lossless"))

    unavailable = SimpleNamespace(
        is_available=False, missing_dependencies={"pylibjpeg": "requires pylibjpeg and pylibjpeg-openjpeg"}
    )
    monkeypatch.setattr(decode_module, "get_decoder", lambda uid: unavailable)
    with pytest.raises(MissingDecoderError, match=r"JPEG 2000.*pip install pylibjpeg pylibjpeg-openjpeg"):
        read_mammogram(tmp_path / "j.dcm")


@pytest.mark.parametrize(
    ("syntax", "package"),
    [("jpeg-lossless", "pylibjpeg-libjpeg"), ("rle", "pylibjpeg-rle"), ("jpeg2000", "pylibjpeg-openjpeg")],
)
def test_install_hint_per_syntax(syntax, package):
    assert package in decode_module.install_hint(pydicom.uid.UID(TRANSFER_SYNTAXES[syntax]))
    assert "pylibjpeg-libjpeg" in decode_module.install_hint(JPEGLSLossless)


def test_unknown_transfer_syntax_has_no_decoder(tmp_path):
    write_test_image(tmp_path / "a.dcm", DicomEncoding(transfer_syntax="jpeg2000-lossless"))
    raw = (tmp_path / "a.dcm").read_bytes()
    assert raw.count(b"1.2.840.10008.1.2.4.90") == 1
    (tmp_path / "x.dcm").write_bytes(raw.replace(b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.4.99"))
    with pytest.raises(MissingDecoderError, match=r"1\.2\.840\.10008\.1\.2\.4\.99.*gdcmconv --raw"):
        read_mammogram(tmp_path / "x.dcm")


@pytest.mark.parametrize(
    ("syntax", "marker"), [("jpeg2000-lossless", b"\xff\x4f\xff\x51"), ("jpeg-lossless", b"\xff\xc3")]
)
def test_corrupt_codestream_is_a_decode_error(tmp_path, syntax, marker):
    write_test_image(tmp_path / "a.dcm", DicomEncoding(transfer_syntax=syntax))
    raw = (tmp_path / "a.dcm").read_bytes()
    start = raw.index(marker)
    corrupt = raw[:start] + bytes(len(marker) + 8) + raw[start + len(marker) + 8 :]
    (tmp_path / "bad.dcm").write_bytes(corrupt)
    with pytest.raises(DecodeError, match=r"decoding the JPEG.*corrupt"):
        read_mammogram(tmp_path / "bad.dcm")


@pytest.mark.parametrize(
    ("tags", "max_pixels", "match"),
    [
        (
            {"Rows": 60000, "Columns": 60000},
            100_000_000,
            "3,600,000,000 pixels exceeds max_pixels=100,000,000",
        ),
        ({"NumberOfFrames": 50000}, 100_000_000, "50000 frames"),
        ({}, 1000, "exceeds max_pixels=1,000"),
        ({"Rows": 0}, 100_000_000, "empty or missing"),
    ],
)
def test_absurd_sizes_are_refused_before_decoding(tmp_path, monkeypatch, tags, max_pixels, match):
    write_test_image(tmp_path / "a.dcm", tags=tags)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoding was attempted")

    monkeypatch.setattr(read_module, "decode_pixels", no_decoding)
    monkeypatch.setattr(read_module, "check_pixel_bytes", no_decoding)
    with pytest.raises(ImageSizeError, match=match):
        read_mammogram(tmp_path / "a.dcm", max_pixels=max_pixels)


@pytest.mark.parametrize(
    ("tags", "match"),
    [
        ({"NumberOfFrames": 2}, "2 frames.*expect_mammogram=False"),
        ({"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB"}, "colour image.*greyscale"),
    ],
)
def test_multiframe_and_colour_are_refused_for_mammograms(tmp_path, tags, match):
    write_test_image(tmp_path / "a.dcm", tags=tags)
    with pytest.raises(UnsupportedImageError, match=match):
        read_mammogram(tmp_path / "a.dcm")


@pytest.mark.parametrize(
    "syntax", ["explicit-little", "implicit-little", "deflated", "jpeg2000-lossless", "rle"]
)
def test_every_truncation_and_corruption_is_a_read_error(tmp_path, syntax):
    """Cut the file at many points and flip random bytes: only DicomReadError subclasses come out."""
    write_test_image(tmp_path / "a.dcm", DicomEncoding(transfer_syntax=syntax), tags=identifying_tags())
    raw = (tmp_path / "a.dcm").read_bytes()
    rng = np.random.default_rng(0)
    variants = [raw[:cut] for cut in range(0, len(raw) - 1, 13)]
    for _ in range(60):
        flipped = np.frombuffer(raw, dtype=np.uint8).copy()
        flipped[rng.integers(0, 1200, size=3)] = rng.integers(0, 256, size=3, dtype=np.uint8)
        variants.append(flipped.tobytes())
    path = tmp_path / "bad.dcm"
    for variant in variants:
        path.write_bytes(variant)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                read_mammogram(path)
            except DicomReadError as exc:
                assert leaked(str(exc)) == [], str(exc)
        assert leaked(" ".join(str(w.message) for w in caught)) == []
