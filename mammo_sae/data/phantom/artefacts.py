"""Phantoms with the artefacts of real files added, and the truth of which pixels are breast and which label.

    case = artefact_case("label", seed=8101)           # one phantom view with a burned-in label beside it
    write_case(case, Path("label.dcm"))                 # as DICOM, in the case's encoding
    case.breast_hw, case.label_hw                       # bool [H, W] truth masks

Kinds (``ARTEFACTS``): burned-in text labels and L/R marker blocks next to the breast, white and black
scanner borders, a film label strip, tape at the film's corners, PixelPaddingValue regions, digitised film
(wide dynamic range, 4000 x 3200 pixels, a border, a label strip and tape; RLE Lossless or uncompressed),
an implant, very dense and very fatty breasts, the breast touching the top or bottom edge, a FOR
PROCESSING raw version (log-inverse) and MONOCHROME1. SYNTHETIC: phantoms, no patient. The breast truth is
the clean phantom's breast (above ``BREAST_LEVEL``, holes filled) minus what an artefact covers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from mammo_sae.data.conditioning import ROBUST, condition
from mammo_sae.data.dicom import MammogramDicom
from mammo_sae.data.dicom.display import WindowPreset
from mammo_sae.data.dicom.write import DicomEncoding, intensity_to_stored, write_mammogram
from mammo_sae.data.phantom.config import PhantomConfig
from mammo_sae.data.phantom.plan import plan_dataset
from mammo_sae.data.phantom.render import render_image
from mammo_sae.data.preprocess import BORDER, preprocess_mammogram

ARTEFACTS = (
    "clean",
    "label",
    "marker",
    "border-white",
    "border-black",
    "label-strip",
    "tape",
    "padding",
    "film-rle",
    "film-raw",
    "implant",
    "dense",
    "fatty",
    "edge-top",
    "edge-bottom",
    "for-processing",
    "monochrome1",
)
BASE_SIZE = (1280, 1024)
FILM_SIZE = (4000, 3200)
#: display intensity above which a clean phantom pixel is breast (air renders below 0.03, fat near 0.3)
BREAST_LEVEL = 0.08
LABEL_LEVEL = 0.97
#: FOR PROCESSING raw signal: stored = RAW_PEAK * exp(-RAW_ATTENUATION * intensity)
RAW_PEAK, RAW_ATTENUATION = 16000.0, 3.0
#: the gap kept between an artefact placed beside the breast and the skin line, as a fraction of the width
GAP_FRACTION = 0.02
WINDOWS = (WindowPreset(0.5, 0.6, "SOFT"), WindowPreset(0.45, 0.3, "HARD"), WindowPreset(0.6, 0.9, "WIDE"))


@dataclass(frozen=True)
class ArtefactCase:
    """One phantom view with an artefact: stored values, how to encode them and the truth masks."""

    kind: str
    stored_hw: np.ndarray  # uint16 [H, W]
    encoding: DicomEncoding
    breast_hw: np.ndarray  # bool [H, W]: breast pixels (an implant is breast)
    label_hw: np.ndarray  # bool [H, W]: label, marker, border, strip, tape and padding pixels off the breast
    laterality: str
    view: str

    def __post_init__(self) -> None:
        assert self.stored_hw.dtype == np.uint16 and self.stored_hw.ndim == 2
        assert self.breast_hw.shape == self.label_hw.shape == self.stored_hw.shape
        assert not (self.breast_hw & self.label_hw).any(), "a pixel is breast or label, not both"


def base_phantom(
    seed: int, view_index: int = 0, size_hw: tuple[int, int] = BASE_SIZE, density: str | None = None
) -> tuple[np.ndarray, str, str]:
    """A clean phantom view (intensity [0, 1], bright = dense; no marker), its laterality and view."""
    plans = plan_dataset(PhantomConfig(studies=1, seed=seed, confounder_rate=0.0))
    plan = plans[view_index % len(plans)]
    plan = replace(plan, marker=False, density=density or plan.density)
    return render_image(plan, size_hw).intensity, plan.laterality, plan.view


def breast_truth(intensity_hw: np.ndarray) -> np.ndarray:
    """bool [H, W]: the clean phantom's breast, its largest component above BREAST_LEVEL, holes filled."""
    above = (intensity_hw > BREAST_LEVEL).astype(np.uint8)
    contours, _ = cv2.findContours(above, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(above)
    if contours:
        largest = max(range(len(contours)), key=lambda k: cv2.contourArea(contours[k]))
        cv2.drawContours(filled, contours, largest, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def far_side(laterality: str) -> str:
    """The side away from the chest wall in the stored orientation (a left breast's wall is on the left)."""
    return "right" if laterality == "L" else "left"


def artefact_case(kind: str, seed: int, view_index: int = 0) -> ArtefactCase:
    """The phantom of ``seed`` / ``view_index`` with the artefact ``kind`` (one of ARTEFACTS) added."""
    if kind not in ARTEFACTS:
        raise ValueError(f"unknown artefact {kind!r}; choose one of {ARTEFACTS}")
    density = {"dense": "D", "fatty": "A"}.get(kind)
    intensity_hw, laterality, view = base_phantom(seed, view_index, density=density)
    rng = np.random.default_rng([seed, view_index, ARTEFACTS.index(kind)])
    if kind in ("edge-top", "edge-bottom"):
        intensity_hw = touch_edge(intensity_hw, kind.removeprefix("edge-"), rng)
    breast_hw = breast_truth(intensity_hw)
    label_hw = np.zeros_like(breast_hw)
    encoding = DicomEncoding(bits_stored=12)
    far = far_side(laterality)
    if kind == "label":
        label_hw = burn_in_label(intensity_hw, breast_hw, far, rng)
    elif kind == "marker":
        label_hw = marker_block(intensity_hw, breast_hw, far, rng)
    elif kind in ("border-white", "border-black"):
        label_hw = scanner_border(intensity_hw, 0.99 if kind == "border-white" else 0.0, 0.015)
    elif kind == "label-strip":
        label_hw = label_strip(intensity_hw, far, rng)
    elif kind == "tape":
        label_hw = corner_tape(intensity_hw, breast_hw, far, rng)
    elif kind == "implant":
        add_implant(intensity_hw, breast_hw, rng)
    elif kind == "monochrome1":
        label_hw = burn_in_label(intensity_hw, breast_hw, far, rng)
        encoding = DicomEncoding(photometric="MONOCHROME1", bits_stored=12)
    elif kind == "padding":
        return padding_case(intensity_hw, breast_hw, laterality, view)
    elif kind == "for-processing":
        return raw_case(intensity_hw, breast_hw, laterality, view)
    elif kind.startswith("film"):
        return film_case(intensity_hw, breast_hw, kind, laterality, view, rng)
    breast_hw &= ~label_hw  # an opaque artefact (a border) hides the breast under it
    stored_hw = intensity_to_stored(intensity_hw, encoding)
    return ArtefactCase(kind, stored_hw, encoding, breast_hw, label_hw, laterality, view)


def write_case(case: ArtefactCase, path: Path, windows: bool = True) -> Path:
    """Write ``case`` as a DICOM file (with three window presets unless ``windows`` is False)."""
    encoding = case.encoding
    if windows and not encoding.windows and encoding.presentation_intent == "FOR PRESENTATION":
        top = encoding.max_stored
        presets = tuple(WindowPreset(w.center * top, w.width * top, w.name) for w in WINDOWS)
        encoding = replace(encoding, windows=presets)
    write_mammogram(path, case.stored_hw, laterality=case.laterality, view=case.view, encoding=encoding)
    return path


# --- artefacts drawn into the intensity (bright = dense, modified in place) ------------------------------


def _beside_breast(breast_hw: np.ndarray, box_hw: tuple[int, int], far: str, row: int) -> tuple[int, int]:
    """Top-left (y, x) of a box of size box_hw placed on ``row`` in the air on the far side of the breast,
    GAP_FRACTION of the width from the skin line (the breast's outermost pixel over the box's rows and a
    gap above and below them)."""
    rows, cols = breast_hw.shape
    height, width = box_hw
    y = int(np.clip(row, 0, rows - height))
    gap = int(GAP_FRACTION * cols)
    span = breast_hw[max(0, y - gap) : y + height + gap]
    columns = np.flatnonzero(span.any(axis=0))
    if far == "right":
        x = (int(columns.max()) + 1 if columns.size else 0) + gap
        x = min(x, cols - width)
    else:
        x = (int(columns.min()) if columns.size else cols) - gap - width
        x = max(x, 0)
    return y, x


def burn_in_label(
    intensity_hw: np.ndarray, breast_hw: np.ndarray, far: str, rng: np.random.Generator
) -> np.ndarray:
    """Two lines of burned-in text (site, date, view) beside the breast near its top; the text's pixels."""
    rows, cols = intensity_hw.shape
    lines = (
        f"SITE {int(rng.integers(10, 99))} MG",
        f"2024-0{int(rng.integers(1, 9))}-1{int(rng.integers(9))}",
    )
    scale = cols / 1024
    font_scale, thickness = 0.9 * scale, max(1, round(2 * scale))
    (text_w, text_h), _ = cv2.getTextSize(
        max(lines, key=len), cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness
    )
    block_h = int(3.2 * text_h)
    y, x = _beside_breast(breast_hw, (block_h, text_w), far, int(rng.uniform(0.05, 0.2) * rows))
    canvas = np.zeros((rows, cols), np.uint8)
    for k, line in enumerate(lines):
        origin = (x, y + text_h + int(k * 1.4 * text_h))
        cv2.putText(canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, thickness, cv2.LINE_AA)
    np.maximum(intensity_hw, canvas.astype(np.float32) / 255 * LABEL_LEVEL, out=intensity_hw)
    return canvas > 0


def marker_block(
    intensity_hw: np.ndarray, breast_hw: np.ndarray, far: str, rng: np.random.Generator
) -> np.ndarray:
    """A lead L/R marker: a bright square with a darker letter, beside the breast at mid height."""
    rows, cols = intensity_hw.shape
    side = int(0.06 * cols)
    y, x = _beside_breast(breast_hw, (side, side), far, int(rng.uniform(0.35, 0.6) * rows))
    intensity_hw[y : y + side, x : x + side] = 0.95
    letter = np.zeros((side, side), np.uint8)
    cv2.putText(letter, "L" if far == "right" else "R", (side // 5, 4 * side // 5), 0, side / 40, 255, 3)
    block = intensity_hw[y : y + side, x : x + side]
    block[letter > 0] = 0.35
    mask = np.zeros((rows, cols), bool)
    mask[y : y + side, x : x + side] = True
    return mask


def scanner_border(intensity_hw: np.ndarray, level: float, fraction: float) -> np.ndarray:
    """A uniform frame ``fraction`` of the shorter side wide around the image (a film scanner's bed)."""
    width = max(1, int(fraction * min(intensity_hw.shape)))
    mask = np.ones(intensity_hw.shape, bool)
    mask[width:-width, width:-width] = False
    intensity_hw[mask] = level
    return mask


def label_strip(intensity_hw: np.ndarray, far: str, rng: np.random.Generator) -> np.ndarray:
    """A film identification strip: a bright rectangle with dark text at the far top corner, on the edge."""
    rows, cols = intensity_hw.shape
    height, width = int(0.07 * rows), int(0.3 * cols)
    x = cols - width if far == "right" else 0
    intensity_hw[:height, x : x + width] = 0.9
    canvas = np.zeros((height, width), np.uint8)
    text = f"HOSP {int(rng.integers(100, 999))} MAMMO"
    cv2.putText(canvas, text, (width // 12, 2 * height // 3), 0, width / 520, 255, max(1, width // 200))
    intensity_hw[:height, x : x + width][canvas > 0] = 0.15
    mask = np.zeros((rows, cols), bool)
    mask[:height, x : x + width] = True
    return mask


def corner_tape(
    intensity_hw: np.ndarray, breast_hw: np.ndarray, far: str, rng: np.random.Generator
) -> np.ndarray:
    """Two semi-transparent tape strips across the far corners (film taped to the viewer), ending a gap short
    of the breast; the taped pixels."""
    rows, cols = intensity_hw.shape
    tape = np.zeros((rows, cols), np.uint8)
    corner_x = cols - 1 if far == "right" else 0
    strip = int(0.04 * cols)
    for corner_y in (0, rows - 1):
        reach = int(rng.uniform(0.15, 0.25) * cols)
        dx = -reach if far == "right" else reach
        dy = reach if corner_y == 0 else -reach
        start, end = (corner_x, corner_y + dy), (corner_x + dx, corner_y)
        cv2.line(tape, start, end, 1, thickness=strip)
    gap = 2 * int(GAP_FRACTION * cols) + 1
    near = cv2.dilate(breast_hw.astype(np.uint8), np.ones((gap, gap), np.uint8)).astype(bool)
    mask = tape.astype(bool) & ~near
    intensity_hw[mask] = np.clip(intensity_hw[mask] + 0.3, 0.0, 1.0)
    return mask


def add_implant(intensity_hw: np.ndarray, breast_hw: np.ndarray, rng: np.random.Generator) -> None:
    """A very bright, uniform ellipse (a silicone implant) inside the breast, behind its centre."""
    ys, xs = np.nonzero(breast_hw)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    axes = (int(0.22 * (xs.max() - xs.min())), int(0.2 * (ys.max() - ys.min())))
    implant = np.zeros(breast_hw.shape, np.uint8)
    cv2.ellipse(implant, (cx, cy), axes, float(rng.uniform(-20, 20)), 0, 360, 1, thickness=-1)
    inside = implant.astype(bool) & breast_hw
    intensity_hw[inside] = 0.99 + 0.005 * rng.standard_normal(int(inside.sum())).astype(np.float32)


def touch_edge(intensity_hw: np.ndarray, edge: str, rng: np.random.Generator) -> np.ndarray:
    """The image shifted up ("top") or down ("bottom") so that the breast runs off that edge."""
    rows = intensity_hw.shape[0]
    breast_rows = np.flatnonzero(breast_truth(intensity_hw).any(axis=1))
    overshoot = int(rng.uniform(0.05, 0.12) * rows)
    shift = -(int(breast_rows[0]) + overshoot) if edge == "top" else rows - int(breast_rows[-1]) + overshoot
    air = float(np.median(intensity_hw[intensity_hw < BREAST_LEVEL]))
    out = np.full_like(intensity_hw, air)
    if shift < 0:
        out[: rows + shift] = intensity_hw[-shift:]
    else:
        out[shift:] = intensity_hw[: rows - shift]
    noise = 0.004 * rng.standard_normal(out.shape).astype(np.float32)
    return np.clip(np.where(out == air, out + np.abs(noise), out), 0.0, 1.0).astype(np.float32)


# --- cases with their own encoding ----------------------------------------------------------------------


def padding_case(intensity_hw: np.ndarray, breast_hw: np.ndarray, laterality: str, view: str) -> ArtefactCase:
    """The air beyond a collimation edge on the far side and along the top stored as PixelPaddingValue
    (the maximum: white under MONOCHROME2 if read without the tag)."""
    rows, cols = intensity_hw.shape
    encoding = DicomEncoding(bits_stored=12, pixel_padding_value=4095)
    stored_hw = intensity_to_stored(np.minimum(intensity_hw, 4094 / 4095), encoding)
    columns = np.flatnonzero(breast_hw.any(axis=0))
    gap = int(GAP_FRACTION * cols)
    padding_hw = np.zeros((rows, cols), bool)
    if far_side(laterality) == "right":
        padding_hw[:, min(cols - 1, int(columns.max()) + gap) :] = True
    else:
        padding_hw[:, : max(1, int(columns.min()) - gap)] = True
    padding_hw[: int(0.03 * rows)] = True
    padding_hw &= ~breast_hw
    stored_hw[padding_hw] = 4095
    return ArtefactCase("padding", stored_hw, encoding, breast_hw, padding_hw, laterality, view)


def raw_case(intensity_hw: np.ndarray, breast_hw: np.ndarray, laterality: str, view: str) -> ArtefactCase:
    """A FOR PROCESSING version: linear detector signal RAW_PEAK * exp(-RAW_ATTENUATION * intensity),
    high where little was absorbed (air), as raw images are stored (MONOCHROME2, 14 bits)."""
    signal = RAW_PEAK * np.exp(-RAW_ATTENUATION * intensity_hw.astype(np.float64))
    stored_hw = np.rint(signal).astype(np.uint16)
    encoding = DicomEncoding(bits_stored=14, presentation_intent="FOR PROCESSING")
    return ArtefactCase(
        "for-processing", stored_hw, encoding, breast_hw, np.zeros_like(breast_hw), laterality, view
    )


def film_case(
    intensity_hw: np.ndarray,
    breast_hw: np.ndarray,
    kind: str,
    laterality: str,
    view: str,
    rng: np.random.Generator,
) -> ArtefactCase:
    """Digitised film: FILM_SIZE pixels, 16 bits over a wide range with a grey film base (air is not black),
    a white scanner border, a label strip and corner tape; RLE Lossless ("film-rle") or uncompressed."""
    rows, cols = FILM_SIZE
    big_hw = cv2.resize(intensity_hw, (cols, rows), interpolation=cv2.INTER_LINEAR)
    breast_hw = cv2.resize(breast_hw.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST) > 0
    far = far_side(laterality)
    label_hw = corner_tape(big_hw, breast_hw, far, rng)
    label_hw |= label_strip(big_hw, far, rng)
    label_hw |= scanner_border(big_hw, 1.0, 0.01)
    grain = 0.01 * rng.standard_normal((rows, cols)).astype(np.float32)
    film_hw = 0.12 + 0.85 * np.clip(big_hw + grain, 0.0, 1.0) ** 0.8  # film base fog, then a soft curve
    breast_hw &= ~label_hw
    syntax = "rle" if kind == "film-rle" else "explicit-little"
    encoding = DicomEncoding(bits_stored=16, transfer_syntax=syntax)
    stored_hw = intensity_to_stored(film_hw, encoding)
    return ArtefactCase(kind, stored_hw, encoding, breast_hw, label_hw, laterality, view)


# --- scoring a breast extraction --------------------------------------------------------------------------


def kept_pixels(image: MammogramDicom, conditioning: str = ROBUST) -> np.ndarray:
    """bool [H, W]: the stored pixels that reach the model frame as image: inside the breast crop and,
    under "robust", inside the conditioned breast mask (the rest is set to the background)."""
    transform = preprocess_mammogram(image, conditioning=conditioning).transform
    kept_hw = np.zeros(image.stored.shape, bool)
    kept_hw[np.ix_(transform.y.kept + transform.y.offset, transform.x.kept + transform.x.offset)] = True
    if conditioning == ROBUST:
        kept_hw &= condition(image).breast_hw
    return kept_hw


def extraction_scores(case: ArtefactCase, kept_hw: np.ndarray) -> tuple[float, float | None]:
    """(fraction of breast pixels kept, fraction of label pixels excluded; None without label pixels), both
    inside the recipe's 5-pixel border crop (pixels outside it never reach any frame)."""
    inner_hw = np.zeros(kept_hw.shape, bool)
    inner_hw[BORDER:-BORDER, BORDER:-BORDER] = True
    breast_hw, label_hw = case.breast_hw & inner_hw, case.label_hw & inner_hw
    assert breast_hw.any(), "a case always has a breast"
    kept = float((kept_hw & breast_hw).sum() / breast_hw.sum())
    excluded = 1.0 - float((kept_hw & label_hw).sum() / label_hw.sum()) if label_hw.any() else None
    return kept, excluded
