"""The hanging viewer's spec (mammo_sae/bundle/hanging.py) on small synthetic DICOMs, no browser: pixels
sent as zlib uint16 samples decode back to the modality values (downscaled to at most ``max_rows`` rows with
the aspect kept), each side is mirrored and anchored so its chest wall meets the centre line, the file's
VOI presets keep the file's names, MONOCHROME1 is flagged, a missing view is an empty slot with its name,
the four slots keep the hanging order, the legend names what is drawn, and boxes, marks and the heatmap
arrive in the coordinates viewer.js reads (original pixels, row-major tokens)."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from mammo_sae.bundle.cases import HANGING_ORDER
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.hanging import (
    KEYS,
    NO_OVERLAY,
    Overlay,
    PackedPixels,
    assemble_spec,
    empty_slot,
    heatmap_colours,
    slot_spec,
    view_pixels,
    view_presets,
)
from mammo_sae.bundle.marks import Mark
from mammo_sae.bundle.render import FINDING_COLOURS, MARK_COLOUR, colour_hex
from mammo_sae.data.dicom import (
    FULL_RANGE,
    DicomEncoding,
    MammogramDicom,
    WindowPreset,
    intensity_to_stored,
    read_mammogram,
    write_mammogram,
)
from mammo_sae.data.frames import AxisMap, FrameTransform

ROWS, COLS = 120, 90
GRID = (6, 5)
VIEWER_JS = Path(__file__).resolve().parents[1] / "app" / "components" / "hanging_viewer" / "viewer.js"
SOFT_HARD = (WindowPreset(2200, 2400, "SOFT"), WindowPreset(2600, 900, "HARD"))


def breast_intensity(seed: int, side: str = "left") -> np.ndarray:
    """Floats in [0, 1], bright = dense: a textured half-disc of tissue against one edge, background 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    r = np.hypot(xx / (COLS * 0.8), (yy - ROWS / 2) / (ROWS * 0.45))
    tissue = np.where(
        r < 1, 0.4 + 0.5 * np.sqrt(np.clip(1 - r, 0, 1)) + 0.03 * rng.standard_normal(r.shape), 0
    )
    tissue = np.clip(tissue, 0, 1)
    return tissue if side == "left" else tissue[:, ::-1].copy()


def write_view(
    folder: Path,
    name: str,
    stored: np.ndarray,
    laterality: str = "R",
    view: str = "CC",
    encoding: DicomEncoding | None = None,
) -> MammogramDicom:
    """Write ``stored`` as a DICOM under ``folder`` and read it back as the app does."""
    path = folder / f"{name}.dcm"
    encoding = encoding or DicomEncoding(bits_stored=12, windows=SOFT_HARD)
    write_mammogram(path, stored, laterality=laterality, view=view, encoding=encoding)
    return read_mammogram(path)


def stored_breast(seed: int, side: str = "left", encoding: DicomEncoding | None = None) -> np.ndarray:
    return intensity_to_stored(breast_intensity(seed, side), encoding or DicomEncoding(bits_stored=12))


def samples_of(packed: PackedPixels) -> np.ndarray:
    """What the browser decodes: little-endian uint16 samples, ``height x width``."""
    raw = zlib.decompress(packed.data)
    assert len(raw) == 2 * packed.width * packed.height
    return np.frombuffer(raw, dtype="<u2").reshape(packed.height, packed.width)


def whole_image_frame(rows: int = ROWS, cols: int = COLS) -> FrameTransform:
    """The whole image as the model frame at half size: the token grid covers the image exactly."""
    return FrameTransform(
        (rows, cols), AxisMap(0, np.arange(cols), cols // 2), AxisMap(0, np.arange(rows), rows // 2)
    )


def tissue_side(image_hw: np.ndarray) -> str:
    half = image_hw.shape[1] // 2
    return "left" if image_hw[:, :half].mean() > image_hw[:, -half:].mean() else "right"


def four_slots(folder: Path, **first: object) -> list[dict]:
    """R CC (with ``first``'s keyword arguments to slot_spec), L CC, R MLO present; L MLO absent."""
    slots = []
    for i, (laterality, view) in enumerate(HANGING_ORDER[:3]):
        image = write_view(folder, f"{laterality}{view}", stored_breast(i), laterality, view)
        extra = first if i == 0 else {}
        slots.append(slot_spec(laterality, view, image, view_pixels(image, 2048), **extra))  # type: ignore[arg-type]
    slots.append(empty_slot(*HANGING_ORDER[3]))
    return slots


# --- pixels ------------------------------------------------------------------------------------------------


def test_pixels_round_trip_the_stored_values_exactly(tmp_path: Path) -> None:
    stored = stored_breast(1)
    image = write_view(tmp_path, "exact", stored)
    packed = view_pixels(image, 2048)
    samples = samples_of(packed)
    assert samples.dtype == np.dtype("<u2") and samples.shape == (ROWS, COLS)
    assert (packed.width, packed.height, packed.scale) == (COLS, ROWS, 1.0)
    assert packed.step == 1.0, "integer values over fewer than 65535 levels are sent exactly"
    assert samples.min() == 1, "the lowest value is sample 1 (0 is padding)"
    np.testing.assert_array_equal(packed.offset + packed.step * samples.astype(np.float64), stored)


def test_rescaled_values_are_sent_as_modality_values(tmp_path: Path) -> None:
    encoding = DicomEncoding(bits_stored=12, rescale_slope=0.5, rescale_intercept=-100.0)
    stored = stored_breast(2, encoding=encoding)
    packed = view_pixels(write_view(tmp_path, "rescaled", stored, encoding=encoding), 2048)
    decoded = packed.offset + packed.step * samples_of(packed).astype(np.float64)
    modality = stored * 0.5 - 100.0
    assert np.abs(decoded - modality).max() <= packed.step / 2 + 1e-9
    assert decoded.min() == pytest.approx(modality.min()) and decoded.max() == pytest.approx(modality.max())


def test_values_over_more_than_65534_levels_are_quantised_over_their_range(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 65536, (ROWS, COLS), dtype=np.uint16)
    stored[0, 0], stored[0, 1] = 0, 65535
    packed = view_pixels(write_view(tmp_path, "wide", stored, encoding=DicomEncoding(bits_stored=16)), 2048)
    samples = samples_of(packed)
    assert packed.step > 1.0 and samples.min() == 1 and samples.max() == 65535
    decoded = packed.offset + packed.step * samples.astype(np.float64)
    assert np.abs(decoded - stored).max() <= packed.step / 2 + 1e-6


def test_tall_views_are_downscaled_to_max_rows_keeping_the_aspect(tmp_path: Path) -> None:
    stored = stored_breast(4)
    packed = view_pixels(write_view(tmp_path, "tall", stored), ROWS // 2)
    assert packed.height == ROWS // 2 and packed.width == COLS // 2
    assert packed.scale == pytest.approx(0.5)
    decoded = packed.offset + packed.step * samples_of(packed).astype(np.float64)
    block_means = stored.astype(np.float64).reshape(ROWS // 2, 2, COLS // 2, 2).mean(axis=(1, 3))
    assert np.abs(decoded - block_means).max() <= packed.step / 2 + 1e-3, "an area average, 2 x 2 here"
    odd = view_pixels(write_view(tmp_path, "odd", stored), 50)
    assert odd.height == 50 and odd.scale == pytest.approx(50 / ROWS)
    assert abs(odd.width - COLS * 50 / ROWS) <= 0.5, "the width follows the same scale"
    assert view_pixels(write_view(tmp_path, "short", stored), 4 * ROWS).height == ROWS, "never upscaled"


def test_padding_is_sample_zero_and_left_out_of_the_range(tmp_path: Path) -> None:
    stored = stored_breast(5)
    stored[stored == 0] = 4095  # the background is the padding value
    encoding = DicomEncoding(bits_stored=12, pixel_padding_value=4095)
    image = write_view(tmp_path, "padded", stored, encoding=encoding)
    samples = samples_of(view_pixels(image, 2048))
    padding = stored == 4095
    assert padding.any() and np.all(samples[padding] == 0) and np.all(samples[~padding] >= 1)
    full = next(p for p in view_presets(image) if p["name"] == FULL_RANGE)
    tissue = stored[~padding]
    assert full["center"] - full["width"] / 2 == pytest.approx(tissue.min())
    assert full["center"] + full["width"] / 2 == pytest.approx(tissue.max())


def test_pixel_keys_follow_the_content(tmp_path: Path) -> None:
    a = write_view(tmp_path, "a", stored_breast(6))
    b = write_view(tmp_path, "b", stored_breast(7))
    key_a = slot_spec("R", "CC", a, view_pixels(a, 2048))["image_key"]
    assert key_a == slot_spec("R", "CC", a, view_pixels(a, 2048))["image_key"]
    assert key_a != slot_spec("R", "CC", b, view_pixels(b, 2048))["image_key"]
    assert key_a != slot_spec("R", "CC", a, view_pixels(a, ROWS // 2))["image_key"]


# --- hanging: mirroring and anchors ------------------------------------------------------------------------


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("laterality", ["R", "L"])
def test_each_side_hangs_with_its_chest_wall_on_the_centre_line(
    tmp_path: Path, laterality: str, side: str, photometric: str
) -> None:
    """The R slot (left column) hugs its right edge, the L slot its left edge; the mirroring puts the
    tissue on that edge whichever side of the file it is on (MONOCHROME1 stores tissue as LOW values)."""
    encoding = DicomEncoding(bits_stored=12, photometric=photometric, windows=SOFT_HARD)
    intensity = breast_intensity(8, side)
    image = write_view(tmp_path, "v", intensity_to_stored(intensity, encoding), laterality, "CC", encoding)
    slot = slot_spec(laterality, "CC", image, view_pixels(image, 2048))
    centre_line = "right" if laterality == "R" else "left"
    assert slot["anchor"] == centre_line
    assert slot["flip"] == (side != centre_line)
    shown = intensity[:, ::-1] if slot["flip"] else intensity  # as viewer.js mirrors the image
    assert tissue_side(shown) == centre_line
    assert slot["monochrome1"] == (photometric == "MONOCHROME1")


def test_the_viewer_app_layout_mirrors_only_the_right_views(tmp_path: Path) -> None:
    slots = four_slots(tmp_path)
    assert [s["flip"] for s in slots[:3]] == [True, False, True], "every file has its breast on the left"
    assert [s["anchor"] for s in slots] == ["right", "left", "right", "left"]


def test_laterality_must_be_a_side(tmp_path: Path) -> None:
    image = write_view(tmp_path, "x", stored_breast(9))
    with pytest.raises(ValueError, match="laterality"):
        slot_spec("B", "CC", image, view_pixels(image, 2048))


# --- presets -----------------------------------------------------------------------------------------------


def test_presets_keep_the_file_names_then_its_luts_then_full_range(tmp_path: Path) -> None:
    encoding = DicomEncoding(
        bits_stored=12, windows=SOFT_HARD, voi_lut_sequence=True, voi_lut_function="SIGMOID"
    )
    stored = stored_breast(10)
    image = write_view(tmp_path, "presets", stored, encoding=encoding)
    slot = slot_spec("L", "MLO", image, view_pixels(image, 2048))
    presets = slot["presets"]
    assert [p["name"] for p in presets[:2]] == ["SOFT", "HARD"]
    assert (presets[1]["center"], presets[1]["width"], presets[1]["function"]) == (2600.0, 900.0, "SIGMOID")
    lut = presets[2]
    assert "lut" in lut and "center" not in lut and lut["name"] == image.voi_luts[0].name
    assert min(lut["lut"]["data"]) >= 0.0 and max(lut["lut"]["data"]) <= 1.0, "LUT outputs scaled to [0, 1]"
    assert lut["lut"]["first"] == float(image.voi_luts[0].first_mapped)
    assert len(lut["lut"]["data"]) == len(image.voi_luts[0].data)
    full = presets[-1]
    assert full["name"] == FULL_RANGE and full["function"] == "LINEAR_EXACT" and len(presets) == 4
    assert (full["center"], full["width"]) == ((stored.min() + stored.max()) / 2, stored.max() - stored.min())
    assert slot["default_preset"] == 0 and presets[slot["default_preset"]]["name"] == "SOFT"


def test_a_file_without_presets_opens_at_full_range(tmp_path: Path) -> None:
    image = write_view(tmp_path, "bare", stored_breast(11), encoding=DicomEncoding(bits_stored=12))
    slot = slot_spec("R", "CC", image, view_pixels(image, 2048))
    assert [p["name"] for p in slot["presets"]] == [FULL_RANGE]
    assert slot["default_preset"] == 0


# --- empty slots and the assembled spec --------------------------------------------------------------------


@pytest.mark.parametrize(("laterality", "view"), HANGING_ORDER)
def test_an_empty_slot_carries_its_name(laterality: str, view: str) -> None:
    slot = empty_slot(laterality, view)
    assert slot["name"] == f"{laterality} {view}" and slot["present"] is False
    assert (slot["laterality"], slot["view"]) == (laterality, view)
    assert slot["anchor"] == ("right" if laterality == "R" else "left")
    assert slot["boxes"] == [] and slot["marks"] == [] and slot["heatmap"] is None


def test_empty_and_present_slots_have_the_same_fields(tmp_path: Path) -> None:
    present = four_slots(tmp_path)[0]
    assert set(empty_slot("L", "MLO")) == set(present)


def test_the_spec_keeps_hanging_order_and_is_plain_json(tmp_path: Path) -> None:
    slots = four_slots(tmp_path)
    spec = assemble_spec("study-x", slots, nonce=5, selected=2)
    assert [s["name"] for s in spec["slots"]] == ["R CC", "L CC", "R MLO", "L MLO"]
    assert [s["present"] for s in spec["slots"]] == [True, True, True, False]
    assert (spec["study"], spec["nonce"], spec["selected"]) == ("study-x", 5, 2)
    assert spec["keys"] == KEYS
    assert json.loads(json.dumps(spec)) == spec, "the spec crosses to the browser as JSON"


def test_the_spec_refuses_views_out_of_order_or_a_bad_selection(tmp_path: Path) -> None:
    slots = four_slots(tmp_path)
    with pytest.raises(BundleError, match="R CC, L CC, R MLO, L MLO"):
        assemble_spec("s", [slots[1], slots[0], slots[2], slots[3]])
    with pytest.raises(BundleError):
        assemble_spec("s", slots[:3])
    with pytest.raises(ValueError, match="selected"):
        assemble_spec("s", slots, selected=4)


# --- boxes, marks, heatmap ---------------------------------------------------------------------------------


def test_boxes_and_marks_stay_in_original_pixels(tmp_path: Path) -> None:
    """viewer.js multiplies them by the slot's ``scale`` and mirrors them with the image."""
    image = write_view(tmp_path, "marked", stored_breast(12))
    packed = view_pixels(image, ROWS // 2)
    slot = slot_spec(
        "R", "CC", image, packed,
        boxes=[("mass", (10, 20, 30, 50)), ("calcification", (5.5, 6.5, 7.5, 8.5))],
        marks=[Mark(0, "mass", (12.0, 22.0, 28.0, 48.0), 0.873)],
    )  # fmt: skip
    assert slot["scale"] == pytest.approx(0.5) and slot["width"] == COLS // 2
    assert [b["box"] for b in slot["boxes"]] == [[10.0, 20.0, 30.0, 50.0], [5.5, 6.5, 7.5, 8.5]]
    assert [b["kind"] for b in slot["boxes"]] == ["mass", "calcification"]
    assert slot["boxes"][0]["colour"] == colour_hex(FINDING_COLOURS["mass"])
    assert slot["boxes"][1]["colour"] == colour_hex(FINDING_COLOURS["calcification"])
    (mark,) = slot["marks"]
    assert mark["box"] == [12.0, 22.0, 28.0, 48.0] and mark["head"] == "mass"
    assert mark["score"] == pytest.approx(0.873) and mark["label"] == "mass 87%"
    assert mark["colour"] == colour_hex(MARK_COLOUR)
    assert mark["colour"] not in {colour_hex(c) for c in FINDING_COLOURS.values()}, "marks are not boxes"


def test_the_grid_box_is_the_model_frame_on_original_pixels(tmp_path: Path) -> None:
    image = write_view(tmp_path, "grid", stored_breast(13))
    packed = view_pixels(image, 2048)
    whole = slot_spec("R", "CC", image, packed, transform=whole_image_frame(), grid=GRID)
    assert whole["grid"] == {"rows": GRID[0], "cols": GRID[1], "box": [0.0, 0.0, float(COLS), float(ROWS)]}
    cropped = FrameTransform((ROWS, COLS), AxisMap(5, np.arange(40), 20), AxisMap(10, np.arange(100), 50))
    box = slot_spec("R", "CC", image, packed, transform=cropped, grid=GRID)["grid"]["box"]
    assert box == [5.0, 10.0, 45.0, 110.0], "x from the 5-pixel border over 40 kept, y from 10 over 100"
    assert slot_spec("R", "CC", image, packed)["grid"] is None


def test_heatmap_values_are_row_major_tokens(tmp_path: Path) -> None:
    """viewer.js reads token (row, col) at ``values[row * cols + col]``, as its clicks number tokens."""
    image = write_view(tmp_path, "heat", stored_breast(14))
    token_map = np.zeros(GRID, np.float32)
    token_map[4, 1] = 0.8
    token_map[0, 3] = 0.2
    overlay = Overlay("latent", latent=7, opacity=0.6, threshold=0.2)
    slot = slot_spec(
        "R", "CC", image, view_pixels(image, 2048), transform=whole_image_frame(), grid=GRID,
        token_map=token_map, overlay=overlay,
    )  # fmt: skip
    heat = slot["heatmap"]
    values = np.asarray(heat["values"])
    assert values.shape == (GRID[0] * GRID[1],)
    assert values[4 * GRID[1] + 1] == pytest.approx(0.8) and values[0 * GRID[1] + 3] == pytest.approx(0.2)
    assert np.count_nonzero(values) == 2
    assert heat["diverging"] is False and heat["vmax"] == pytest.approx(0.8), "its own peak by default"
    assert (heat["opacity"], heat["threshold"]) == pytest.approx((0.6, 0.2))
    assert len(heat["colours"]) == 256 and all(len(c) == 3 for c in heat["colours"])
    scaled = slot_spec(
        "R", "CC", image, view_pixels(image, 2048), transform=whole_image_frame(), grid=GRID,
        token_map=token_map, overlay=overlay, vmax=2.0,
    )  # fmt: skip
    assert scaled["heatmap"]["vmax"] == 2.0, "the study's one colour scale wins"


def test_an_evidence_heatmap_diverges_about_zero(tmp_path: Path) -> None:
    image = write_view(tmp_path, "evidence", stored_breast(15))
    evidence = np.zeros(GRID, np.float32)
    evidence[1, 1], evidence[2, 2] = 0.3, -0.9
    slot = slot_spec(
        "L", "CC", image, view_pixels(image, 2048), transform=whole_image_frame(), grid=GRID,
        token_map=evidence, overlay=Overlay("evidence", head="mass"),
    )  # fmt: skip
    heat = slot["heatmap"]
    assert heat["diverging"] is True and heat["vmax"] == pytest.approx(0.9), "the largest magnitude"
    low, high = heat["colours"][0], heat["colours"][255]
    assert low[2] > low[0] and high[0] > high[2], "-vmax is blue, +vmax is red"


def test_a_token_map_needs_its_grid_and_the_frame_must_fit_the_image(tmp_path: Path) -> None:
    image = write_view(tmp_path, "checks", stored_breast(16))
    packed = view_pixels(image, 2048)
    with pytest.raises(ValueError, match="grid"):
        slot_spec(
            "R", "CC", image, packed, transform=whole_image_frame(), grid=GRID, token_map=np.zeros((3, 3))
        )
    with pytest.raises(BundleError, match="re-analyse"):
        slot_spec("R", "CC", image, packed, transform=whole_image_frame(ROWS + 2, COLS), grid=GRID)


def test_overlays_are_checked_where_they_are_made() -> None:
    with pytest.raises(ValueError, match="kind"):
        Overlay("contours")
    with pytest.raises(ValueError, match="head"):
        Overlay("evidence")
    with pytest.raises(ValueError, match="latent"):
        Overlay("latent")
    with pytest.raises(ValueError, match="fractions"):
        Overlay("none", opacity=1.5)
    with pytest.raises(ValueError, match="colour map"):
        Overlay("latent", latent=1, colour_map="no-such-map")


# --- the legend --------------------------------------------------------------------------------------------


def test_the_legend_names_box_kinds_and_no_mark_or_scale_when_there_are_none(tmp_path: Path) -> None:
    slots = four_slots(tmp_path, boxes=[("calcification", (1, 2, 3, 4)), ("mass", (5, 6, 7, 8))])
    legend = assemble_spec("s", slots, overlay=NO_OVERLAY, box_kinds=("mass",))["legend"]
    assert [(e["kind"], e["label"]) for e in legend] == [("box", "mass"), ("box", "calcification")]
    assert legend[1]["colour"] == colour_hex(FINDING_COLOURS["calcification"])


def test_the_legend_shows_the_mark_entry_only_when_a_view_has_marks(tmp_path: Path) -> None:
    marked = four_slots(tmp_path / "a", marks=[Mark(0, "mass", (1, 2, 3, 4), 0.9)])
    kinds = [e["kind"] for e in assemble_spec("s", marked)["legend"]]
    assert kinds == ["mark"]
    mark = assemble_spec("s", marked)["legend"][0]
    assert mark["colour"] == colour_hex(MARK_COLOUR)
    (tmp_path / "b").mkdir()
    assert assemble_spec("s", four_slots(tmp_path / "b"))["legend"] == []


def test_the_evidence_scale_is_symmetric_about_zero(tmp_path: Path) -> None:
    evidence = np.zeros(GRID, np.float32)
    evidence[0, 0], evidence[3, 2] = 0.25, -0.5
    overlay = Overlay("evidence", head="mass", colour_map="inferno")
    slots = four_slots(
        tmp_path, transform=whole_image_frame(), grid=GRID, token_map=evidence, overlay=overlay
    )
    (scale,) = [e for e in assemble_spec("s", slots, overlay=overlay)["legend"] if e["kind"] == "scale"]
    assert scale["label"] == "evidence for mass"
    assert float(scale["min"]) == pytest.approx(-0.5) and float(scale["max"]) == pytest.approx(0.5)
    assert scale["max"].startswith("+")
    assert scale["colours"] == heatmap_colours("inferno", diverging=True)
    fixed = assemble_spec("s", slots, overlay=overlay, vmax=2.0)["legend"][-1]
    assert (fixed["min"], fixed["max"]) == ("-2", "+2"), "the study's vmax, when given"


def test_the_latent_scale_runs_from_zero_to_the_peak(tmp_path: Path) -> None:
    token_map = np.zeros(GRID, np.float32)
    token_map[2, 2] = 1.5
    overlay = Overlay("latent", latent=7, colour_map="viridis")
    slots = four_slots(
        tmp_path, transform=whole_image_frame(), grid=GRID, token_map=token_map, overlay=overlay
    )
    scale = assemble_spec("s", slots, overlay=overlay)["legend"][-1]
    assert (scale["kind"], scale["label"], scale["min"], scale["max"]) == ("scale", "latent 7", "0", "1.5")
    assert scale["colours"] == heatmap_colours("viridis", diverging=False)
    assert heatmap_colours("viridis", diverging=False) != heatmap_colours("inferno", diverging=False)


# --- the keys the help lists are the keys viewer.js handles --------------------------------------------------


def test_every_listed_key_is_handled_by_the_component() -> None:
    source = VIEWER_JS.read_text()
    act = source[source.index("function act(key)") : source.index("function linkNow()")]
    handled = set(re.findall(r'case "([^"]+)":', act))
    names = {"↓": "ArrowDown", "↑": "ArrowUp", "Esc": "Escape"}
    listed: set[str] = set()
    for label in KEYS:
        for part in (p.strip() for p in label.split("/")):
            if part == "1-4":
                listed |= {"1", "2", "3", "4"}
            elif len(part) == 1 or part in names:
                listed.add(names.get(part, part))
    assert listed, "the help lists keys"
    assert listed == handled, (sorted(listed - handled), sorted(handled - listed))


def test_downscaling_never_mixes_padding_into_the_tissue_beside_it(tmp_path: Path) -> None:
    stored_hw = np.full((120, 80), 1000, np.uint16)
    stored_hw[:, 50:] = 4095  # the padding value, on the right of the file
    path = tmp_path / "padded.dcm"
    write_mammogram(path, stored_hw, laterality="L", view="CC", encoding=DicomEncoding(bits_stored=12),
                    tags={"PixelPaddingValue": 4095})  # fmt: skip
    packed = view_pixels(read_mammogram(path), 50)
    samples_hw = np.frombuffer(zlib.decompress(packed.data), "<u2").reshape(packed.height, packed.width)
    shown = samples_hw[samples_hw > 0] * packed.step + packed.offset
    assert shown.size and np.allclose(shown, 1000), "the tissue keeps its value up to the padding's edge"
    assert (samples_hw == 0).any(), "the padding stays padding"
