"""DICOM layer of mammo-sae: read mammograms (raw pixels + safe metadata), display them, write phantoms.

image = read_mammogram(path)          # MammogramDicom: stored pixels, presets, SafeMetadata
shown = display_image(image, "STANDARD")   # uint8, bright = dense, padding black
write_mammogram(path, stored, laterality="L", view="CC", encoding=DicomEncoding(...))
"""

from mammo_sae.data.dicom.display import (
    FULL_RANGE,
    LookupTable,
    WindowPreset,
    apply_window,
    display_image,
    list_presets,
    padding_mask,
)
from mammo_sae.data.dicom.errors import (
    DecodeError,
    DicomError,
    DicomReadError,
    DicomWriteError,
    ForProcessingWarning,
    ImageSizeError,
    MalformedDicomError,
    MissingDecoderError,
    NoPixelDataError,
    NotDicomError,
    NotMammogramError,
    SuspiciousFileError,
    TruncatedDicomError,
    UnsupportedImageError,
)
from mammo_sae.data.dicom.metadata import (
    DEFAULT_ID_SALT,
    ID_SALT_ENV,
    SafeMetadata,
    salted_key,
)
from mammo_sae.data.dicom.privacy import install_pydicom_log_filter
from mammo_sae.data.dicom.read import DEFAULT_MAX_PIXELS, MammogramDicom, read_mammogram
from mammo_sae.data.dicom.write import TRANSFER_SYNTAXES, DicomEncoding, intensity_to_stored, write_mammogram

__all__ = [
    "DEFAULT_ID_SALT",
    "DEFAULT_MAX_PIXELS",
    "FULL_RANGE",
    "ID_SALT_ENV",
    "TRANSFER_SYNTAXES",
    "DecodeError",
    "DicomEncoding",
    "DicomError",
    "DicomReadError",
    "DicomWriteError",
    "ForProcessingWarning",
    "ImageSizeError",
    "LookupTable",
    "MalformedDicomError",
    "MammogramDicom",
    "MissingDecoderError",
    "NoPixelDataError",
    "NotDicomError",
    "NotMammogramError",
    "SafeMetadata",
    "SuspiciousFileError",
    "TruncatedDicomError",
    "UnsupportedImageError",
    "WindowPreset",
    "apply_window",
    "display_image",
    "intensity_to_stored",
    "list_presets",
    "padding_mask",
    "read_mammogram",
    "salted_key",
    "write_mammogram",
]

install_pydicom_log_filter()
