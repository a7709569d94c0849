"""A tiny end-to-end setting for analysis tests: phantoms, a random resnet18 classifier with mass and
calcification heads, a store of its features and a briefly trained SAE, all on small frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mammo_sae import extract, train
from mammo_sae.data.phantom import PhantomConfig, generate_dataset
from mammo_sae.models import Classifier, create_backbone, save_classifier

FRAME = "256x160"
FRAME_HW = (256, 160)


@dataclass(frozen=True)
class Setting:
    data: Path
    classifier: Path
    sae: Path
    root: Path


def build_setting(root: Path, *, arch: str = "relu") -> Setting:
    data = root / "phantoms"
    generate_dataset(
        data,
        PhantomConfig(
            studies=4, seed=3, height=256, width=208, test_fraction=0.5, mass_rate=0.5, calcification_rate=0.5
        ),
        workers=1,
    )
    torch.manual_seed(0)
    classifier = Classifier.create(create_backbone("timm:resnet18"), {"mass": 1, "calcification": 1})
    for head in classifier.heads.values():  # heads strong enough that interventions move the logits
        torch.nn.init.normal_(head.weight, std=0.5)
    classifier_path = root / "classifier.safetensors"
    save_classifier(classifier, classifier_path)
    stores = root / "stores"
    common = ["--data", str(data), "--classifier", str(classifier_path), "--frame-size", FRAME]
    assert (
        extract.main(
            [
                *common,
                "--out",
                str(stores),
                "--workers",
                "0",
                "--images-per-shard",
                "4",
                "--tokens-per-image",
                "1.0",
                "--no-progress",
            ]
        )
        == 0
    )
    store = next(p for p in stores.iterdir() if (p / "metadata.json").is_file())
    sae = root / f"sae-{arch}"
    args = [
        "--store",
        str(store),
        "--out",
        str(sae),
        "--arch",
        arch,
        "--expansion",
        "2",
        "--batch-size",
        "64",
    ]
    args += ["--max-steps", "30", "--lr", "1e-3", "--no-progress", "--validation-fraction", "0.1"]
    if arch != "relu":
        args += ["--k", "8"]
    assert train.main(args) == 0, "the fixture SAE must train"
    assert json.loads((sae / "cfg.json").read_text())["d_in"] == 512
    return Setting(data, classifier_path, sae, root)


def analyze_args(setting: Setting, out: Path, *extra: str) -> list[str]:
    """The analyze command line of the tests (small chunks, so resuming is exercised)."""
    return [
        "--data", str(setting.data), "--classifier", str(setting.classifier), "--sae", str(setting.sae),
        "--out", str(out), "--workers", "0", "--no-progress", "--chunk-images", "3", *extra,
    ]  # fmt: skip
