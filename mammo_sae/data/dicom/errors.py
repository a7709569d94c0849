"""Error and warning types of the DICOM layer; every message says what is wrong and what to do."""

from __future__ import annotations

from mammo_sae.core.errors import DataError


class DicomError(DataError):
    """Base class of every DICOM-layer failure."""


class DicomWriteError(DicomError):
    """A mammogram could not be encoded or written (e.g. an encoder plugin is missing)."""


class DicomReadError(DicomError):
    """A file could not be read as a usable mammogram."""


class NotDicomError(DicomReadError):
    """The file is not DICOM at all (no 'DICM' marker and no parsable data set)."""


class TruncatedDicomError(DicomReadError):
    """The file ends early, in the header or in the pixel data."""


class NoPixelDataError(DicomReadError):
    """The data set has no Pixel Data element (e.g. a structured report or a presentation state)."""


class NotMammogramError(DicomReadError):
    """Modality is not MG; pass allow_non_mg=True to read it anyway."""


class MissingDecoderError(DicomReadError):
    """The transfer syntax is compressed and no installed plugin can decode it."""


class DecodeError(DicomReadError):
    """A decoder plugin was found but failed on the codestream (corrupt or inconsistent pixel data)."""


class ImageSizeError(DicomReadError):
    """Rows x Columns x frames is zero or above the pixel cap; refused before any decoding."""


class UnsupportedImageError(DicomReadError):
    """Multi-frame or colour image where a single grey mammogram is expected."""


class MalformedDicomError(DicomReadError):
    """The file is complete but breaks the DICOM structure (e.g. its file meta has no transfer syntax)."""


class SuspiciousFileError(DicomReadError):
    """The file carries what no mammogram needs and attacks use (an executable preamble, a decompression
    bomb, megabytes of header text); refused before the costly step."""


class ForProcessingWarning(UserWarning):
    """The image is 'FOR PROCESSING' raw detector data: fine for models, not meant for display."""
