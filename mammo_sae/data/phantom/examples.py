"""Example PNGs of the four views of one phantom study, plain and with ground-truth boxes side by side.

The images go the whole way a user's do: rendered, written as DICOM, read back with `read_mammogram`
and shown with `display_image` under the file's first window preset.

python -m mammo_sae.data.phantom.examples --out docs/phantom_examples
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from mammo_sae.data.dicom import display_image, read_mammogram
from mammo_sae.data.phantom.config import PhantomConfig
from mammo_sae.data.phantom.dataset import image_relpath, produce_image
from mammo_sae.data.phantom.plan import ImagePlan, plan_dataset
from mammo_sae.data.phantom.render import TruthObject

#: Box colours (BGR) per object kind.
BOX_COLOURS = {
    "mass": (60, 60, 255),
    "calcification": (60, 230, 60),
    "benign": (255, 170, 40),
    "marker": (230, 60, 230),
}


def example_study(config: PhantomConfig, max_studies: int = 200) -> list[ImagePlan]:
    """The four plans of the first study showing most object kinds (mass, separate calcification cluster,
    benign structure, marker) in a moderately dense breast."""
    plans = plan_dataset(replace(config, studies=max_studies))
    best, best_score = plans[:4], -1
    for s in range(max_studies):
        study = plans[4 * s : 4 * s + 4]
        kinds = {o.kind for p in study for o in p.objects}
        subtypes = {o.subtype for p in study for o in p.objects}
        score = (
            ("mass" in kinds) + ("cluster" in subtypes) + ("benign" in kinds) + any(p.marker for p in study)
        )
        score += bool(subtypes & {"irregular", "spiculated"}) + (study[0].density in ("B", "C"))
        if score > best_score:
            best, best_score = study, score
        if score == 6:
            break
    return best


def panel(shown: np.ndarray, objects: tuple[TruthObject, ...], height: int = 512) -> np.ndarray:
    """[plain | boxed] side by side, `height` pixels high, BGR uint8; `shown` is an 8-bit display image."""
    rows, cols = shown.shape
    width = round(cols * height / rows)
    plain = cv2.resize(shown, (width, height), interpolation=cv2.INTER_AREA)
    boxed = cv2.cvtColor(plain, cv2.COLOR_GRAY2BGR)
    f = height / rows
    for obj in objects:
        x0, y0, x1, y1 = (round(v * f) for v in obj.box)
        cv2.rectangle(boxed, (x0 - 1, y0 - 1), (x1 + 1, y1 + 1), BOX_COLOURS[obj.kind], 1)
    gap = np.full((height, 6, 3), 255, np.uint8)
    return np.hstack([cv2.cvtColor(plain, cv2.COLOR_GRAY2BGR), gap, boxed])


def render_examples(
    out_dir: str | Path, config: PhantomConfig | None = None, height: int = 512
) -> list[Path]:
    """Write `<lat>_<view>.png` for the four views of an example study; return the paths."""
    config = config or PhantomConfig(seed=0, confounder_rate=0.0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(prefix="phantom-examples-") as tmp:
        for plan in example_study(config):
            result = produce_image(plan, config.size, tmp)
            shown = display_image(read_mammogram(f"{tmp}/{image_relpath(plan)}"))
            path = out / f"{plan.laterality}_{plan.view}.png"
            cv2.imwrite(str(path), panel(shown, result.objects, height), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/phantom_examples", help="folder for the PNGs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=512, help="panel height in pixels")
    args = parser.parse_args(argv)
    for path in render_examples(args.out, PhantomConfig(seed=args.seed), args.height):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
