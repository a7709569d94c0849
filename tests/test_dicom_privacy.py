"""Identifying values never leave the reader: not in safe metadata, the image object, errors or warnings."""

from __future__ import annotations

import hashlib
import pickle
import traceback
import warnings

import numpy as np
import pydicom
import pytest
from dicom_fixtures import IDENTIFYING_TAGS, identifying_tags, leaked, write_test_image

import mammo_sae.data.dicom.read as read_module
from mammo_sae.data.dicom import (
    DEFAULT_ID_SALT,
    ID_SALT_ENV,
    DicomEncoding,
    DicomReadError,
    ImageSizeError,
    NoPixelDataError,
    NotMammogramError,
    TruncatedDicomError,
    UnsupportedImageError,
    read_mammogram,
    salted_key,
)
from mammo_sae.data.dicom.privacy import identifying_strings, scrub


@pytest.fixture
def identifying_file(tmp_path):
    path = tmp_path / "id.dcm"
    write_test_image(path, DicomEncoding(transfer_syntax="explicit-little"), tags=identifying_tags())
    ds = pydicom.dcmread(path)
    assert ds.PatientName == "Quixote^Dulcinea^Maria" and ds[0x00091001].value == "zorblax-secret-7781"
    return path


def test_safe_metadata_and_image_carry_no_identifying_value(identifying_file):
    image = read_mammogram(identifying_file)
    assert leaked(repr(image.metadata)) == []
    assert leaked(str(image.metadata.as_dict())) == []
    assert leaked(repr(image)) == []
    assert leaked(pickle.dumps(image).decode("latin-1")) == []  # nothing hidden in any attribute
    assert image.metadata.key == salted_key(IDENTIFYING_TAGS["SOPInstanceUID"])


def _message_of(path, **kwargs) -> str:
    with pytest.raises(DicomReadError) as info:
        read_mammogram(path, **kwargs)
    # The whole printed traceback, chained exceptions included, is what a user or a log would see.
    return "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize(
    ("extra_tags", "cut", "expected"),
    [
        ({"Modality": "CT"}, 0, NotMammogramError),
        ({"Rows": 60000, "Columns": 60000}, 0, ImageSizeError),
        ({"NumberOfFrames": 3}, 0, UnsupportedImageError),
        ({}, 700, TruncatedDicomError),
        ({}, -100, TruncatedDicomError),
    ],
)
def test_error_messages_carry_no_identifying_value(tmp_path, extra_tags, cut, expected):
    path = tmp_path / "id.dcm"
    write_test_image(path, tags={**identifying_tags(), **extra_tags})
    if cut:
        path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(expected):
        read_mammogram(path)
    assert leaked(_message_of(path)) == []


def test_no_pixel_data_message_carries_no_identifying_value(identifying_file):
    ds = pydicom.dcmread(identifying_file)
    del ds.PixelData
    ds.save_as(identifying_file)
    with pytest.raises(NoPixelDataError):
        read_mammogram(identifying_file)
    assert leaked(_message_of(identifying_file)) == []


def test_decoder_error_text_is_scrubbed(identifying_file, monkeypatch):
    def failing_pixel_array(self):
        raise ValueError(
            f"bad value for {self.PatientName} at {self.InstitutionName} ({self[0x00091001].value})"
        )

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(failing_pixel_array))
    message = _message_of(identifying_file)
    assert "decoding the Explicit VR Little Endian pixel data failed" in message
    assert "<redacted>" in message
    assert leaked(message) == []


def test_pydicom_warnings_are_reissued_scrubbed(identifying_file, monkeypatch):
    original = read_module.dcmread

    def chatty_dcmread(*args, **kwargs):
        ds = original(*args, **kwargs)
        warnings.warn(
            f"suspicious value 'Quixote^Dulcinea^Maria' in {ds.AccessionNumber}", UserWarning, stacklevel=1
        )
        return ds

    monkeypatch.setattr(read_module, "dcmread", chatty_dcmread)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_mammogram(identifying_file)
    texts = [str(w.message) for w in caught]
    assert texts == ["suspicious value '<redacted>' in <redacted>"]


def test_identifying_strings_cover_names_ids_dates_uids_free_text_and_private_tags(identifying_file):
    secrets = identifying_strings(pydicom.dcmread(identifying_file))
    for value in IDENTIFYING_TAGS.values():
        assert value in secrets
    assert {"Quixote", "Dulcinea", "zorblax-secret-7781", "ACME ZORBLAX CORP"} <= secrets
    assert pydicom.uid.DigitalMammographyXRayImageStorageForPresentation not in secrets  # standard UID
    assert pydicom.uid.ExplicitVRLittleEndian not in secrets


def test_scrub_replaces_long_secrets_anywhere_and_short_ones_as_whole_words():
    secrets = frozenset({"Quixote", "GE"})
    assert scrub("Patient Quixote^Maria, vendor GE, JPEG GENERIC", secrets) == (
        "Patient <redacted>^Maria, vendor <redacted>, JPEG GENERIC"
    )


def test_salted_key_depends_on_salt_argument_then_environment(monkeypatch):
    uid = "1.2.3.4"
    monkeypatch.delenv(ID_SALT_ENV, raising=False)
    default = salted_key(uid)
    assert default == hashlib.sha256((DEFAULT_ID_SALT + uid).encode()).hexdigest()[:16]
    monkeypatch.setenv(ID_SALT_ENV, "site-secret")
    assert salted_key(uid) == hashlib.sha256(b"site-secret1.2.3.4").hexdigest()[:16] != default
    assert salted_key(uid, salt="arg") == hashlib.sha256(b"arg1.2.3.4").hexdigest()[:16]


def test_reader_salt_argument_changes_the_key(identifying_file):
    assert (
        read_mammogram(identifying_file, salt="a").metadata.key
        != read_mammogram(identifying_file).metadata.key
    )


def test_safe_metadata_fields(tmp_path):
    path = tmp_path / "m.dcm"
    write_test_image(
        path,
        DicomEncoding(bits_stored=12, photometric="MONOCHROME1"),
        laterality="R",
        view="MLO",
        tags={
            "ImagerPixelSpacing": [0.1, 0.085],
            "ManufacturerModelName": "Phantom 3000",
            "SOPInstanceUID": "1.9",
        },
    )
    meta = read_mammogram(path).metadata.as_dict()
    assert meta == {
        "key": salted_key("1.9"),
        "modality": "MG",
        "laterality": "R",
        "view": "MLO",
        "rows": 96,
        "columns": 80,
        "number_of_frames": 1,
        "samples_per_pixel": 1,
        "bits_allocated": 16,
        "bits_stored": 12,
        "photometric": "MONOCHROME1",
        "transfer_syntax": "Explicit VR Little Endian",
        "presentation_intent": "FOR PRESENTATION",
        "window_presets": [],
        "pixel_spacing_mm": [0.1, 0.085],
        "manufacturer_model_name": "Phantom 3000",
    }


def test_laterality_falls_back_to_series_laterality(tmp_path):
    path = tmp_path / "m.dcm"
    write_test_image(path)
    ds = pydicom.dcmread(path)
    del ds.ImageLaterality
    ds.Laterality = "R"
    ds.save_as(path)
    assert read_mammogram(path).metadata.laterality == "R"
    np.testing.assert_equal(read_mammogram(path).stored.ndim, 2)


def test_pydicom_never_logs_element_values(caplog) -> None:
    import logging

    import mammo_sae.data.dicom  # noqa: F401  (installs the filter on pydicom's own logger)

    with caplog.at_level(logging.WARNING, logger="pydicom"):
        logging.getLogger("pydicom").warning("Invalid value for VR UI: 'deadbeefcafe'")
        logging.getLogger("pydicom").warning("an unrelated pydicom warning")
    text = caplog.text
    assert "deadbeefcafe" not in text and "unrelated" in text
