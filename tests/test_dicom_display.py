"""Display windowing: standard VOI formulas, named presets, VOI LUTs, MONOCHROME1, padding, speed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from dicom_fixtures import smooth_intensity, write_test_image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mammo_sae.data.dicom import (
    FULL_RANGE,
    DicomEncoding,
    LookupTable,
    WindowPreset,
    apply_window,
    display_image,
    list_presets,
    read_mammogram,
)

PRESETS = (WindowPreset(30000, 40000, "STANDARD"), WindowPreset(36000, 12000, "HARDER"))


def _read(tmp_path, encoding, **kwargs):
    stored = write_test_image(tmp_path / "a.dcm", encoding, **kwargs)
    return read_mammogram(tmp_path / "a.dcm"), stored


# --- the standard's formulas (PS3.3 C.11.2.1.2 and C.11.2.1.3.1), written out point by point ----------


def _linear(x, c, w):
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 1.0
    return (x - (c - 0.5)) / (w - 1) + 0.5


def _linear_exact(x, c, w):
    if x <= c - w / 2:
        return 0.0
    if x > c + w / 2:
        return 1.0
    return (x - c) / w + 0.5


def _sigmoid(x, c, w):
    return 1.0 / (1.0 + math.exp(-4.0 * (x - c) / w))


@pytest.mark.parametrize(
    ("function", "reference"), [("LINEAR", _linear), ("LINEAR_EXACT", _linear_exact), ("SIGMOID", _sigmoid)]
)
@pytest.mark.parametrize(("center", "width"), [(2048.0, 4096.0), (100.0, 1.0), (40.0, 400.0)])
def test_window_functions_follow_the_standard(function, reference, center, width):
    if function == "SIGMOID" and width == 1.0:
        width = 2.0
    points = np.array(
        [center - width, center - width / 2, center - 0.5, center, center + 7.3, center + width]
    )
    expected = [reference(x, center, width) for x in points]
    np.testing.assert_allclose(apply_window(points, center, width, function), expected, rtol=0, atol=1e-12)


def test_sigmoid_and_linear_differ_as_the_standard_says(tmp_path):
    for function, reference in (("SIGMOID", _sigmoid), ("LINEAR", _linear)):
        image, stored = _read(tmp_path, DicomEncoding(windows=PRESETS, voi_lut_function=function))
        expected = np.vectorize(lambda x, f=reference: round(255 * f(float(x), 36000.0, 12000.0)))(stored)
        np.testing.assert_array_equal(display_image(image, "HARDER"), expected)
    with pytest.raises(ValueError, match="VOILUTFunction"):
        apply_window(np.zeros(3), 0, 10, "CUBIC")


def test_presets_are_selected_by_name_or_index(tmp_path):
    image, stored = _read(tmp_path, DicomEncoding(windows=PRESETS))
    assert list_presets(image) == ["STANDARD", "HARDER"]
    harder = display_image(image, "HARDER")
    np.testing.assert_array_equal(display_image(image, "harder"), harder)
    np.testing.assert_array_equal(display_image(image, 1), harder)
    np.testing.assert_array_equal(display_image(image), display_image(image, "STANDARD"))  # default: first
    assert not np.array_equal(harder, display_image(image, "STANDARD"))
    expected = np.rint(255 * apply_window(stored, 36000, 12000)).astype(np.uint8)
    np.testing.assert_array_equal(harder, expected)
    with pytest.raises(ValueError, match=r"unknown preset 'SOFTER'.*STANDARD.*HARDER.*FULL RANGE"):
        display_image(image, "SOFTER")
    with pytest.raises(ValueError, match="out of range"):
        display_image(image, 5)


def test_unknown_voi_function_falls_back_to_linear_with_a_warning(tmp_path):
    stored = write_test_image(
        tmp_path / "a.dcm", DicomEncoding(windows=PRESETS), tags={"VOILUTFunction": "LOG"}
    )
    with pytest.warns(UserWarning, match="unknown VOILUTFunction 'LOG'; windows use LINEAR"):
        image = read_mammogram(tmp_path / "a.dcm")
    expected = np.rint(255 * apply_window(stored, 36000, 12000, "LINEAR")).astype(np.uint8)
    np.testing.assert_array_equal(display_image(image, "HARDER"), expected)


def test_unnamed_windows_get_numbered_names(tmp_path):
    image, _ = _read(tmp_path, DicomEncoding(), tags={"WindowCenter": [100, 200], "WindowWidth": [50, 60]})
    assert list_presets(image) == ["WINDOW 1", "WINDOW 2"]


def test_full_range_without_presets_spans_0_to_255(tmp_path):
    image, stored = _read(tmp_path, DicomEncoding(bits_stored=12))
    shown = display_image(image)
    assert (shown.min(), shown.max()) == (0, 255)
    expected = np.rint(255.0 * (stored - stored.min()) / (stored.max() - stored.min())).astype(np.uint8)
    np.testing.assert_array_equal(shown, expected)
    np.testing.assert_array_equal(display_image(image, FULL_RANGE), shown)


def test_voi_lut_sequence_matches_the_window_it_tabulates(tmp_path):
    image, _ = _read(tmp_path, DicomEncoding(windows=PRESETS[:1], voi_lut_sequence=True))
    assert list_presets(image) == ["STANDARD", "LINEAR LUT STANDARD"]
    via_lut = display_image(image, "LINEAR LUT STANDARD").astype(int)
    via_window = display_image(image, "STANDARD").astype(int)
    assert np.abs(via_lut - via_window).max() <= 1


def test_voi_lut_sequence_alone_is_the_default(tmp_path):
    image, stored = _read(tmp_path, DicomEncoding(bits_stored=12, voi_lut_sequence=True))
    assert list_presets(image) == ["LINEAR LUT FULL RANGE"]
    lut = image.voi_luts[0]
    assert lut.first_mapped == stored.min() and len(lut.data) == stored.max() - stored.min() + 1
    assert np.abs(display_image(image).astype(int) - display_image(image, FULL_RANGE)).max() <= 1


def test_monochrome1_display_equals_monochrome2_display_of_the_same_intensities(tmp_path):
    intensity = smooth_intensity(seed=3)
    m2 = DicomEncoding(bits_stored=12, photometric="MONOCHROME2", voi_lut_function="LINEAR_EXACT",
                       windows=(WindowPreset(2000, 1500, "W"),))  # fmt: skip
    m1 = DicomEncoding(bits_stored=12, photometric="MONOCHROME1", voi_lut_function="LINEAR_EXACT",
                       windows=(WindowPreset(4095 - 2000, 1500, "W"),))  # fmt: skip
    write_test_image(tmp_path / "m2.dcm", m2, intensity=intensity)
    write_test_image(tmp_path / "m1.dcm", m1, intensity=intensity)
    image2, image1 = read_mammogram(tmp_path / "m2.dcm"), read_mammogram(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(image1.stored, 4095 - image2.stored)
    for preset in ("W", FULL_RANGE):
        np.testing.assert_array_equal(display_image(image1, preset), display_image(image2, preset))
    for function in ("LINEAR", "SIGMOID"):
        shift = 1 if function == "LINEAR" else 0  # LINEAR's half-pixel offset mirrors to c + 1
        mirrored = [WindowPreset(4095 - 2000 + shift, 1500, "W")]
        mono1 = dataclasses.replace(image1, voi_lut_function=function, window_presets=mirrored)
        mono2 = dataclasses.replace(image2, voi_lut_function=function)
        np.testing.assert_array_equal(display_image(mono1), display_image(mono2))
    assert display_image(image1, FULL_RANGE)[np.unravel_index(np.argmax(intensity), intensity.shape)] == 255


def test_padding_is_black_and_excluded_from_full_range(tmp_path):
    intensity = 0.2 + 0.6 * smooth_intensity(seed=4)
    intensity[:, :20] = 0.0  # background: stored 0, the padding value
    image, stored = _read(tmp_path, DicomEncoding(bits_stored=12, pixel_padding_value=0), intensity=intensity)
    shown = display_image(image)
    assert (shown[:, :20] == 0).all()
    tissue = stored[:, 20:]
    assert shown[:, 20:].max() == 255
    assert shown[:, 20:][tissue == tissue.min()].min() == 0


def test_padding_range_limit_masks_the_whole_range(tmp_path):
    intensity = smooth_intensity(seed=5)
    encoding = DicomEncoding(bits_stored=12, windows=PRESETS[:1], pixel_padding_value=0,
                             pixel_padding_range_limit=1000)  # fmt: skip
    image, stored = _read(tmp_path, encoding, intensity=intensity)
    shown = display_image(image, FULL_RANGE)
    assert (shown[stored <= 1000] == 0).all()
    assert shown[stored > 1000].min() == 0 and shown.max() == 255


def test_rescale_and_modality_lut_sequence_feed_the_window(tmp_path):
    image, stored = _read(
        tmp_path, DicomEncoding(windows=PRESETS, rescale_slope=0.5, rescale_intercept=1000.0)
    )
    expected = np.rint(255 * apply_window(stored * 0.5 + 1000.0, 36000, 12000)).astype(np.uint8)
    np.testing.assert_array_equal(display_image(image, "HARDER"), expected)

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.add_new("LUTData", "US", [int(v) for v in np.arange(4096) * 16])  # US list, not OW bytes
    image, stored = _read(
        tmp_path, DicomEncoding(bits_stored=12), tags={"ModalityLUTSequence": Sequence([item])}
    )
    assert image.modality_lut is not None and image.modality_lut.bits == 16
    expected = np.rint(255.0 * (stored - stored.min()) / (stored.max() - stored.min())).astype(np.uint8)
    np.testing.assert_array_equal(display_image(image), expected)  # a linear LUT keeps the full-range image


def test_lookup_table_clamps_outside_inputs():
    lut = LookupTable(first_mapped=10, data=np.array([0.0, 5.0, 9.0]), bits=4)
    np.testing.assert_array_equal(lut.apply(np.array([0, 10, 11, 12, 99])), [0, 0, 5, 9, 9])
