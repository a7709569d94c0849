"""Display windowing of a full-size mammogram against one plain numpy pass over the same pixels.

`display_image` applies the modality and VOI LUTs (here a SIGMOID VOI function on 12-bit MONOCHROME1
data, the slowest path) and scales to 8 bits. The baseline is the arithmetic that window needs, written
directly in numpy (one exp per pixel, the inversion, one cast) on the same 3000 x 2400 image. Both run in
this process, best of ``--repeat``; the ratio is what to compare (target: <= 3x the bare arithmetic).

    .venv/bin/python benchmarks/display.py [--repeat 5] [--size 3000x2400]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mammo_sae.data.dicom import MammogramDicom, WindowPreset, display_image

TARGET_RATIO = 3.0


def best_seconds(job: Callable[[], object], repeat: int) -> float:
    job()  # warm-up: the first touches of fresh memory are slow
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def sigmoid_mammogram(height: int, width: int) -> MammogramDicom:
    stored = np.random.default_rng(0).integers(0, 4096, size=(height, width), dtype=np.uint16)
    return MammogramDicom(
        stored=stored,
        photometric="MONOCHROME1",
        metadata=None,  # type: ignore[arg-type]
        window_presets=[WindowPreset(2000, 3000, "W")],
        bits_stored=12,
        rescale_slope=1.0,
        rescale_intercept=0.0,
        voi_lut_function="SIGMOID",
        pixel_padding_value=0,
    )


def plain_sigmoid(stored: np.ndarray, center: float = 2000.0, width: float = 3000.0) -> np.ndarray:
    """The arithmetic a SIGMOID window cannot avoid, written directly: one exp per pixel, then 8 bits."""
    values = 255.0 / (1.0 + np.exp(-4.0 * (stored.astype(np.float64) - center) / width))
    return (255.0 - values).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", default="3000x2400", help="HxW of the test image")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    image = sigmoid_mammogram(height, width)
    shown = best_seconds(lambda: display_image(image), args.repeat)
    baseline = best_seconds(lambda: plain_sigmoid(image.stored), args.repeat)
    ratio = shown / baseline
    print(f"display_image {height}x{width} (SIGMOID VOI, MONOCHROME1): {shown * 1000:.1f} ms")
    print(f"the bare sigmoid in numpy:                   {baseline * 1000:.1f} ms")
    print(
        f"ratio: {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x) -> {'ok' if ratio <= TARGET_RATIO else 'SLOW'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
