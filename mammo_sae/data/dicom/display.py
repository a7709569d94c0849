"""Display path of a mammogram: modality LUT, VOI (window / LUT / none), MONOCHROME1 inversion, padding mask.

Formulas follow DICOM PS3.3 C.11.1 (modality LUT) and C.11.2.1.2-3 (LINEAR, LINEAR_EXACT, SIGMOID).
The output is always 8-bit with bright = dense and padding (background) pixels black.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mammo_sae.data.dicom.read import MammogramDicom

__all__ = [
    "FULL_RANGE",
    "LookupTable",
    "WindowPreset",
    "apply_window",
    "display_image",
    "list_presets",
    "padding_mask",
]

#: Preset name that always works: min-max of the non-padding pixels, no window.
FULL_RANGE = "FULL RANGE"


@dataclass(frozen=True)
class WindowPreset:
    """One VOI window: centre and width in modality units, named as in WindowCenterWidthExplanation."""

    center: float
    width: float
    name: str


@dataclass(frozen=True, eq=False)
class LookupTable:
    """A Modality or VOI LUT: input `first_mapped + i` maps to `data[i]`; inputs outside clamp to the ends."""

    first_mapped: int
    data: np.ndarray
    bits: int
    name: str = ""

    def apply(self, values: np.ndarray) -> np.ndarray:
        index = np.clip(np.rint(values) - self.first_mapped, 0, len(self.data) - 1).astype(np.intp)
        return self.data[index]


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """VOI window to [0, 1] per PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID)."""
    x = np.asarray(values, dtype=np.float64)
    function = function.upper()
    if function == "LINEAR":
        assert width >= 1, width
        if width == 1:  # degenerate window: a threshold at c - 0.5
            return (x > center - 0.5).astype(np.float64)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if function == "LINEAR_EXACT":
        assert width > 0, width
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if function == "SIGMOID":
        assert width > 0, width
        exponent = np.clip(-4.0 * (x - center) / width, -700.0, 700.0)
        return 1.0 / (1.0 + np.exp(exponent))
    raise ValueError(f"unknown VOILUTFunction {function!r}; expected LINEAR, LINEAR_EXACT or SIGMOID")


def list_presets(image: MammogramDicom) -> list[str]:
    """Names of the file's VOI presets: windows first, then VOI LUT Sequence entries. FULL_RANGE is implied."""
    return [w.name for w in image.window_presets] + [lut.name for lut in image.voi_luts]


def padding_mask(image: MammogramDicom) -> np.ndarray:
    """True where the STORED value is padding (PixelPaddingValue, or the range up to PixelPaddingRangeLimit)."""
    stored = image.stored
    value, limit = image.pixel_padding_value, image.pixel_padding_range_limit
    if value is None:
        return np.zeros(stored.shape, dtype=bool)
    if limit is None:
        return stored == value
    low, high = min(value, limit), max(value, limit)
    return (stored >= low) & (stored <= high)


def modality_values(image: MammogramDicom) -> np.ndarray:
    """Stored values through the modality LUT (LUT sequence, else rescale slope/intercept, else identity)."""
    stored = image.stored.astype(np.float64)
    if image.modality_lut is not None:
        return image.modality_lut.apply(stored)
    if image.rescale_slope is not None or image.rescale_intercept is not None:
        slope = 1.0 if image.rescale_slope is None else image.rescale_slope
        intercept = 0.0 if image.rescale_intercept is None else image.rescale_intercept
        return stored * slope + intercept
    return stored


def display_image(image: MammogramDicom, preset: str | int | None = None) -> np.ndarray:
    """8-bit display image (bright = dense, padding black) under a VOI preset.

    preset: a name from `list_presets` (case-insensitive), an index into it, FULL_RANGE, or None for the
    first preset of the file (FULL_RANGE if it has none). Under FULL_RANGE a FOR PROCESSING image (raw,
    linear detector signal: air bright) is shown as ``-log(1 + value)``, so it looks like a FOR
    PRESENTATION image (the transform ``data.conditioning`` feeds the model under "robust").
    """
    assert image.stored.ndim == 2, "display_image shows one 2-D frame"
    values = modality_values(image)
    padding = padding_mask(image)
    voi = _resolve_preset(image, preset)
    invert = image.photometric == "MONOCHROME1"  # low values are bright: show 1 - VOI output
    if isinstance(voi, WindowPreset):
        unit = _window(values, voi, image.voi_lut_function, invert)
    elif isinstance(voi, LookupTable):
        unit = voi.apply(values) / float((1 << voi.bits) - 1)
        unit = 1.0 - unit if invert else unit
    elif image.presentation_intent == "FOR PROCESSING":  # raw detector signal: show its attenuation
        unit = _full_range(-np.log1p(np.maximum(values, 0.0)), padding)
    else:
        unit = _full_range(-values if invert else values, padding)
    out = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    out[padding] = 0
    return out


def _resolve_preset(image: MammogramDicom, preset: str | int | None) -> WindowPreset | LookupTable | None:
    choices: list[WindowPreset | LookupTable] = [*image.window_presets, *image.voi_luts]
    names = list_presets(image)
    if preset is None:
        return choices[0] if choices else None
    if isinstance(preset, str) and preset.strip().upper() == FULL_RANGE:
        return None
    if isinstance(preset, int) and not isinstance(preset, bool):
        if -len(choices) <= preset < len(choices):
            return choices[preset]
        raise ValueError(f"preset index {preset} is out of range; this image has {len(choices)}: {names}")
    if isinstance(preset, str):
        wanted = preset.strip().upper()
        for name, choice in zip(names, choices, strict=True):
            if name.strip().upper() == wanted:
                return choice
    raise ValueError(f"unknown preset {preset!r}; choose one of {[*names, FULL_RANGE]} or an index")


def _window(values: np.ndarray, preset: WindowPreset, function: str, invert: bool) -> np.ndarray:
    """The window's output, or 1 minus it when `invert`.

    1 - window(x; c) is computed as window(-x; -c), plus 1 on the centre for LINEAR's half-pixel offset:
    the same arithmetic as the MONOCHROME2 image of the same intensities, so both display identically
    (a literal 1 - u would round ties the other way).
    """
    if not invert:
        return apply_window(values, preset.center, preset.width, function)
    offset = 1.0 if function.upper() == "LINEAR" else 0.0
    return apply_window(-values, offset - preset.center, preset.width, function)


def _full_range(values: np.ndarray, padding: np.ndarray) -> np.ndarray:
    shown = values[~padding] if padding.any() else values
    if shown.size == 0:
        return np.zeros(values.shape)
    low, high = float(shown.min()), float(shown.max())
    if high <= low:
        return np.zeros(values.shape)
    return (values - low) / (high - low)
