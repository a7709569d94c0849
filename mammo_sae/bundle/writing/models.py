"""The models an analysis runs (classifiers, the feature backbone, the SAE), checked against each other
before any image is read, and what the analysis of a dataset covers (concepts, split records).

The features come from ``--backbone`` or, by default, from the first classifier's own encoder; every
classifier's heads are applied to those features, so each classifier must carry the same encoder (a
fine-tuned model gets its own bundle). The SAE must have been trained on that encoder's head layer at the
same frame size; a mismatch of weights is allowed (the paper applies one SAE across models) but recorded
as a warning in the manifest and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mammo_sae.analysis.frames import AnalysisRecord, analysis_records
from mammo_sae.analysis.stream import Models
from mammo_sae.bundle.fingerprints import state_digest
from mammo_sae.bundle.writing.config import AnalyzeConfig, AnalyzeError
from mammo_sae.core.hashing import sha256_file
from mammo_sae.data.frame_policy import FramePolicy
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.models import Backbone, Classifier, create_backbone, load_classifier, stacked_heads
from mammo_sae.sae import SparseAutoencoder, load_sae

TARGET_CONCEPTS = ("mass", "calcification")
DEFAULT_FRAME = (1520, 912)  # the Mammo-CLIP frame, for an SAE that does not record its own


@dataclass
class LoadedInputs:
    classifiers: list[Classifier]
    backbone: Backbone
    backbone_source: str  # "spec" (built from --backbone) or "classifier" (the first classifier's encoder)
    sae: SparseAutoencoder
    tasks: tuple[str, ...]
    frame_size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


def _binary_tasks(config: AnalyzeConfig, classifiers: list[Classifier], backbone: Backbone) -> list[str]:
    digest = state_digest(backbone)
    tasks: list[str] = []
    for path, classifier in zip(config.classifier, classifiers, strict=True):
        if (
            classifier.backbone.num_features != backbone.num_features
            or state_digest(classifier.backbone) != digest
        ):
            raise AnalyzeError(
                f"the classifier {path} carries its own encoder, different from the one making the features "
                f"({config.backbone or config.classifier[0]}); heads only apply to their own encoder's features: "
                "run analyze once per fine-tuned model (one bundle each)"
            )
        for task in classifier.tasks:
            if classifier.task_kind(task) != "binary":
                continue  # multiclass heads (density) have no single logit to explain
            if task in tasks:
                raise AnalyzeError(
                    f"two classifiers have a {task!r} head; give each task once (one bundle per model)"
                )
            tasks.append(task)
    if not tasks:
        raise AnalyzeError("none of the classifiers has a binary head (mass, calcification, ...) to analyse")
    return tasks


def load_inputs(config: AnalyzeConfig, device: torch.device) -> LoadedInputs:
    """Classifiers, backbone and SAE, checked against each other before any image is read."""
    classifiers = [load_classifier(path) for path in config.classifier]
    source = "spec" if config.backbone else "classifier"
    backbone = create_backbone(config.backbone) if config.backbone else classifiers[0].backbone
    tasks = _binary_tasks(config, classifiers, backbone)
    sae = load_sae(config.sae, expect_d_in=backbone.num_features, device=device).eval()
    meta = getattr(sae, "metadata", {}) or {}
    warnings = list(config.warning)  # the caller's own (e.g. the demo's toy-build warning) come first
    layer = meta.get("layer")
    if layer is not None and layer != backbone.default_layer:
        raise AnalyzeError(
            f"the SAE in {config.sae} was trained on layer {layer!r} but the heads read {backbone.default_layer!r}: "
            "interventions need an SAE trained on the head layer"
        )
    identity = meta.get("store_identity") or {}
    frame = (identity.get("preprocessing") or {}).get("frame_size")
    frame_size = (int(frame[0]), int(frame[1])) if frame else DEFAULT_FRAME
    if not frame:
        warnings.append("the SAE does not record its frame size; the Mammo-CLIP frame 1520x912 was used")
    trained = meta.get("backbone") or {}
    if trained.get("architecture") and trained["architecture"] != backbone.architecture:
        raise AnalyzeError(
            f"the SAE was trained on {trained['architecture']} features, the backbone here is "
            f"{backbone.architecture}"
        )
    if trained.get("classifier_sha256") and source == "classifier":
        same = trained["classifier_sha256"] == sha256_file(config.classifier[0])
    elif trained.get("weights_sha256") and source == "spec":
        same = trained["weights_sha256"] == backbone.weights_sha256
    else:
        same = True
    if not same:
        warnings.append(
            "the SAE was trained on the features of another encoder than the one analysed here (the paper applies "
            "one SAE across models; reconstruction quality may be lower)"
        )
    return LoadedInputs(
        classifiers, backbone.to(device).eval(), source, sae, tuple(tasks), frame_size, warnings
    )


def chunk_models(inputs: LoadedInputs, device: torch.device) -> Models:
    """What every chunk runs: the feature model, all binary heads stacked in task order, the SAE."""
    weights, biases = stacked_heads(inputs.classifiers, inputs.tasks)
    feature_model = inputs.classifiers[0] if inputs.backbone_source == "classifier" else _wrap(inputs)
    return Models(
        # channels-last weights to match the channels-last input (as extraction does): 1.5x faster on CPU
        feature_model=feature_model.to(memory_format=torch.channels_last),
        heads_w_hd=weights.to(device),
        heads_b_h=biases.to(device),
        sae=inputs.sae,
        device=device,
    )


def _wrap(inputs: LoadedInputs) -> Classifier:
    """A classifier shell around a spec-built backbone (only its backbone is used for features)."""
    return Classifier.create(inputs.backbone, {inputs.tasks[0]: 1})


def choose_concepts(config: AnalyzeConfig, index: VindrIndex) -> tuple[str, ...]:
    if config.concepts:
        concepts = tuple(c.strip() for c in config.concepts.split(",") if c.strip())
        unknown = [c for c in concepts if c not in index.categories]
        if unknown:
            raise AnalyzeError(
                f"--concepts {unknown} are not label columns of {config.data}; known: {', '.join(index.categories)}"
            )
        return concepts
    concepts = tuple(c for c in TARGET_CONCEPTS if c in index.categories)
    if not concepts:
        raise AnalyzeError(
            f"{config.data} has no mass or calcification labels; name label columns with --concepts"
        )
    return concepts


def split_records(
    index: VindrIndex, split: str, limit: int | None, policy: FramePolicy
) -> tuple[list[AnalysisRecord], dict[str, str]]:
    """The split's images under the frame policy of its root, numbered in order, and those skipped."""
    records, missing = analysis_records(policy, index, split, limit)
    if not records:
        raise AnalyzeError(f"no readable images in split {split!r}")
    return records, missing
