"""The DICOM writer: valid Part-10 files, deterministic bytes, atomic writes, strict input checks."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_fixtures import write_test_image
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
)

from mammo_sae.data.dicom import (
    TRANSFER_SYNTAXES,
    DicomEncoding,
    DicomWriteError,
    WindowPreset,
    intensity_to_stored,
    write_mammogram,
)

WINDOWS = (WindowPreset(2048, 4000, "STANDARD"), WindowPreset(2300, 2500, "HARDER"))


def test_writes_part10_file_with_mammography_attributes(tmp_path):
    encoding = DicomEncoding(
        photometric="MONOCHROME1",
        bits_stored=12,
        windows=WINDOWS,
        voi_lut_function="SIGMOID",
        rescale_slope=1.5,
        rescale_intercept=-10.0,
        pixel_padding_value=4095,
    )
    stored = write_test_image(tmp_path / "a.dcm", encoding, laterality="R", view="MLO")
    raw = (tmp_path / "a.dcm").read_bytes()
    assert raw[:128] == bytes(128) and raw[128:132] == b"DICM"

    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == DigitalMammographyXRayImageStorageForPresentation
    assert (ds.Modality, ds.ImageLaterality, ds.ViewPosition) == ("MG", "R", "MLO")
    assert (ds.Rows, ds.Columns) == stored.shape
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME1")
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert [float(c) for c in ds.WindowCenter] == [2048, 2300]
    assert [float(w) for w in ds.WindowWidth] == [4000, 2500]
    assert list(ds.WindowCenterWidthExplanation) == ["STANDARD", "HARDER"]
    assert ds.VOILUTFunction == "SIGMOID"
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.5, -10.0)
    assert ds.PixelPaddingValue == 4095
    assert ds.BurnedInAnnotation == "NO"
    np.testing.assert_array_equal(ds.pixel_array, stored)


def test_for_processing_uses_its_own_sop_class(tmp_path):
    write_test_image(tmp_path / "p.dcm", DicomEncoding(presentation_intent="FOR PROCESSING"))
    ds = pydicom.dcmread(tmp_path / "p.dcm")
    assert ds.SOPClassUID == DigitalMammographyXRayImageStorageForProcessing
    assert ds.PresentationIntentType == "FOR PROCESSING"


@pytest.mark.parametrize("syntax", sorted(TRANSFER_SYNTAXES))
def test_same_input_gives_identical_bytes(tmp_path, syntax):
    if syntax.startswith("jpeg-ls"):
        pytest.importorskip("jpeg_ls", reason="JPEG-LS encoding needs pyjpegls (requirements-dev.txt)")
    encoding = DicomEncoding(transfer_syntax=syntax, windows=WINDOWS[:1], voi_lut_sequence=True)
    write_test_image(tmp_path / "a.dcm", encoding)
    write_test_image(tmp_path / "b.dcm", encoding)
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[syntax]


def test_uids_derive_from_content_unless_given(tmp_path):
    write_test_image(tmp_path / "a.dcm")
    write_test_image(tmp_path / "b.dcm", intensity=np.zeros((8, 8)))
    a, b = pydicom.dcmread(tmp_path / "a.dcm"), pydicom.dcmread(tmp_path / "b.dcm")
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.StudyInstanceUID != b.StudyInstanceUID
    assert a.SOPInstanceUID.is_valid

    write_test_image(tmp_path / "c.dcm", tags={"SOPInstanceUID": "1.2.3.44", "PatientID": "P1"})
    c = pydicom.dcmread(tmp_path / "c.dcm")
    assert c.SOPInstanceUID == c.file_meta.MediaStorageSOPInstanceUID == "1.2.3.44"
    assert c.PatientID == "P1"


def test_lossy_jpeg2000_is_flagged_as_lossy(tmp_path):
    write_test_image(tmp_path / "j.dcm", DicomEncoding(transfer_syntax="jpeg2000", jpeg2000_ratio=8.0))
    ds = pydicom.dcmread(tmp_path / "j.dcm")
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_15444_1"
    assert float(ds.LossyImageCompressionRatio) > 1


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "a.dcm"
    write_test_image(target)
    write_test_image(target, DicomEncoding(bits_stored=12))  # overwrite in place
    assert pydicom.dcmread(target).BitsStored == 12
    with pytest.raises(ValueError, match="unknown DICOM keyword"):
        write_test_image(tmp_path / "sub" / "b.dcm", tags={"PatientNmae": "x"})
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.dcm"]


@pytest.mark.parametrize(
    ("stored", "encoding", "message"),
    [
        (
            np.full((4, 4), 4096, np.uint16),
            DicomEncoding(bits_stored=12),
            "bits_stored=12 allows at most 4095",
        ),
        (np.zeros((4, 4), np.int32), DicomEncoding(), "uint16"),
        (np.zeros((2, 4, 4), np.uint16), DicomEncoding(), "2-D"),
        (np.zeros((0, 4), np.uint16), DicomEncoding(), "non-empty"),
    ],
)
def test_bad_pixels_raise_value_error(tmp_path, stored, encoding, message):
    with pytest.raises(ValueError, match=message):
        write_mammogram(tmp_path / "x.dcm", stored, laterality="L", view="CC", encoding=encoding)
    assert not (tmp_path / "x.dcm").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"photometric": "RGB"}, "MONOCHROME1 or MONOCHROME2"),
        ({"bits_stored": 8}, "12..16"),
        ({"transfer_syntax": "jpeg-xl"}, "unknown transfer_syntax"),
        ({"voi_lut_function": "CUBIC"}, "voi_lut_function"),
        ({"presentation_intent": "FOR FUN"}, "presentation_intent"),
        ({"windows": (WindowPreset(10, 0, "BAD"),)}, "width"),
        ({"rescale_slope": 2.0}, "both rescale"),
    ],
)
def test_bad_encoding_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DicomEncoding(**kwargs)


def test_jpeg2000_refuses_images_too_small_for_openjpeg(tmp_path):
    encoding = DicomEncoding(transfer_syntax="jpeg2000-lossless")
    with pytest.raises(DicomWriteError, match="at least 32 rows and columns"):
        write_mammogram(
            tmp_path / "x.dcm", np.zeros((16, 64), np.uint16), laterality="L", view="CC", encoding=encoding
        )


def test_bad_laterality_raises(tmp_path):
    with pytest.raises(ValueError, match="laterality"):
        write_mammogram(tmp_path / "x.dcm", np.zeros((4, 4), np.uint16), laterality="left", view="CC")


def test_intensity_to_stored_scales_and_inverts_for_monochrome1():
    intensity = np.array([[0.0, 0.5, 1.0, 1.7, -0.2]])
    mono2 = intensity_to_stored(intensity, DicomEncoding(bits_stored=12))
    mono1 = intensity_to_stored(intensity, DicomEncoding(bits_stored=12, photometric="MONOCHROME1"))
    assert mono2.dtype == mono1.dtype == np.uint16
    np.testing.assert_array_equal(mono2, [[0, 2048, 4095, 4095, 0]])
    np.testing.assert_array_equal(mono1, 4095 - mono2)
    assert intensity_to_stored(np.ones((1, 1)), DicomEncoding()).item() == 65535
