"""Per-image DICOM encodings of the phantoms: photometric, bit depth, transfer syntax, named windows."""

from __future__ import annotations

import numpy as np

from mammo_sae.data.dicom.write import DicomEncoding, WindowPreset
from mammo_sae.data.phantom.plan import EncodingChoice

#: Window presets relative to the breast's intensity range: (centre shift as a fraction of the range,
#: width as a multiple of the range). Names as scanners write them in WindowCenterWidthExplanation.
WINDOW_SHAPES = {"NORMAL": (0.04, 1.2), "HARDER": (0.1, 0.8), "SOFTER": (0.0, 1.6)}


def breast_range(intensity: np.ndarray) -> tuple[float, float]:
    """Robust (low, high) display intensity of the breast (pixels clearly above the background)."""
    sample = intensity[::4, ::4]
    tissue = sample[sample > 0.08]
    if tissue.size < 16:
        return 0.0, 1.0
    low, high = np.percentile(tissue, [1.0, 99.5])
    return float(low), float(max(high, low + 1e-3))


def build_encoding(choice: EncodingChoice, intensity: np.ndarray) -> DicomEncoding:
    """The DicomEncoding for `choice`, with windows fitted to the rendered image (in stored units)."""
    max_stored = (1 << choice.bits_stored) - 1
    low, high = breast_range(intensity)
    span = high - low
    windows = []
    for name in choice.window_names:
        shift, factor = WINDOW_SHAPES[name]
        centre = round(((low + high) / 2 + shift * span) * max_stored, 1)  # MONOCHROME2 stored units
        if choice.photometric == "MONOCHROME1":
            # Stored values are inverted (s -> max - s); mirror the centre so the file displays exactly
            # like its MONOCHROME2 twin (LINEAR windows are defined on pixel centres: c -> max + 1 - c).
            centre = max_stored - centre + (0 if choice.sigmoid else 1)
        # A sigmoid never reaches 0: a narrower width keeps the background close to black.
        width = round(max(span * factor * (0.75 if choice.sigmoid else 1.0) * max_stored, 2.0), 1)
        windows.append(WindowPreset(center=centre, width=width, name=name))
    return DicomEncoding(
        photometric=choice.photometric,
        bits_stored=choice.bits_stored,
        transfer_syntax=choice.transfer_syntax,
        windows=tuple(windows),
        voi_lut_function="SIGMOID" if choice.sigmoid else None,
        presentation_intent="FOR PRESENTATION",
    )
