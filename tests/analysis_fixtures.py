"""A tiny end-to-end setting for analysis tests: phantoms, a random resnet18 classifier with mass and
calcification heads, a store of its features and a briefly trained SAE, all on small frames. Every step
is a command's config object passed to its library function."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: conftest loads this module for every test
    from mammo_sae.bundle.writing.config import AnalyzeConfig

FRAME_HW = (256, 160)
FRAME = f"{FRAME_HW[0]}x{FRAME_HW[1]}"


@dataclass(frozen=True)
class Setting:
    data: Path
    classifier: Path
    sae: Path
    root: Path


def build_setting(root: Path, *, arch: str = "relu") -> Setting:
    import torch

    from mammo_sae.core.distributed import LOCAL
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset
    from mammo_sae.extraction.config import ExtractConfig
    from mammo_sae.extraction.run import run_extraction
    from mammo_sae.models import Classifier, create_backbone, save_classifier
    from mammo_sae.sae.config import TrainConfig
    from mammo_sae.sae.trainer import train

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
    extraction = ExtractConfig(
        data=str(data),
        classifier=str(classifier_path),
        out=str(root / "stores"),
        frame_size=FRAME_HW,
        workers=0,
        images_per_shard=4,
        tokens_per_image=1.0,
        progress=False,
    )
    store = run_extraction(extraction, LOCAL)["store"]
    sae = root / f"sae-{arch}"
    training = TrainConfig(
        store=store,
        out=str(sae),
        arch=arch,
        expansion=2,
        batch_size=64,
        max_steps=30,
        lr=1e-3,
        progress=False,
        validation_fraction=0.1,
        **({} if arch == "relu" else {"k": 8}),
    )
    train(training, LOCAL)
    assert json.loads((sae / "cfg.json").read_text())["d_in"] == 512
    return Setting(data, classifier_path, sae, root)


def analyze_config(setting: Setting, out: Path, **changes: Any) -> AnalyzeConfig:
    """The analyze config of the tests (small chunks, so resuming is exercised)."""
    from mammo_sae.bundle.writing.config import AnalyzeConfig

    return AnalyzeConfig(
        data=str(setting.data),
        classifier=(str(setting.classifier),),
        sae=str(setting.sae),
        out=str(out),
        workers=0,
        progress=False,
        chunk_images=3,
        **changes,
    )


def analyze_args(setting: Setting, out: Path, *extra: str) -> list[str]:
    """The same as command-line arguments (generated from the config), for tests of the command itself."""
    from mammo_sae.analyze import COMMAND as ANALYZE

    return [*ANALYZE.argv(analyze_config(setting, out)), *extra]


def constant_feature_classifier(path: Path) -> Path:
    """A resnet18 classifier whose encoder ignores its input (first convolution zeroed, a constant bias after
    it), as a broken or random-weight checkpoint can: its feature maps are the same for every image."""
    import torch

    from mammo_sae.models import Classifier, create_backbone, save_classifier

    torch.manual_seed(0)
    classifier = Classifier.create(create_backbone("timm:resnet18"), {"mass": 1, "calcification": 1})
    with torch.no_grad():
        classifier.backbone.model.conv1.weight.zero_()
        classifier.backbone.model.bn1.bias.fill_(1.0)
        for head in classifier.heads.values():
            torch.nn.init.normal_(head.weight, std=0.5)
    save_classifier(classifier, path)
    return path


def model_inputs(setting: Setting, bundle: Any, count: int) -> Any:
    """The model inputs (count, 3, H, W) of the first ``count`` images of ``bundle``, framed as analysis
    frames them."""
    import torch

    from mammo_sae.analysis.frames import AnalysisFrames, AnalysisRecord
    from mammo_sae.data.vindr import VindrIndex

    index = VindrIndex.load(setting.data)
    paths = index.images.set_index("image_id")["path"]
    ids = bundle.images["image_id"].tolist()[:count]
    records = [AnalysisRecord(i, image_id, paths[image_id]) for i, image_id in enumerate(ids)]
    dataset = AnalysisFrames(records, FRAME_HW)
    return torch.stack([dataset[i][1] for i in range(len(records))])
