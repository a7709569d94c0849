"""`analyze`: stream a split through backbone + SAE into chunks, then assemble the bundle.

    config = AnalyzeConfig(data="data/phantoms", classifier=("clf.safetensors",), sae="runs/sae", out="bundle")
    summary = analyze(config)

The features come from ``--backbone`` or, by default, from the first classifier's own encoder; every
classifier's heads are applied to those features, so each classifier must carry the same encoder (a
fine-tuned model gets its own bundle). The SAE must have been trained on that encoder's head layer at the
same frame size; a mismatch of weights is allowed (the paper applies one SAE across models) but recorded
as a warning in the manifest and the report.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mammo_sae import __version__
from mammo_sae.analysis.assemble import assemble_bundle
from mammo_sae.analysis.frames import AnalysisRecord
from mammo_sae.analysis.interventions import parse_ks
from mammo_sae.analysis.localisation import MapThreshold
from mammo_sae.analysis.scores import RANK_BY
from mammo_sae.analysis.stream import ChunkResult, Models, run_chunk
from mammo_sae.bundle.format import MANIFEST, WORK_DIR, BundleError, read_manifest
from mammo_sae.bundle.inputs import (
    backbone_fingerprint,
    dataset_fingerprint,
    file_fingerprint,
    sae_fingerprint,
    state_digest,
)
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.config_cli import REQUIRED, knob
from mammo_sae.core.distributed import LOCAL, device_for
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.hashing import sha256_file, sha256_json
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.images import SPLITS, select_records
from mammo_sae.models import (
    Backbone,
    Classifier,
    create_backbone,
    load_classifier,
    stacked_heads,
)
from mammo_sae.sae import SparseAutoencoder, load_sae

TARGET_CONCEPTS = ("mass", "calcification")
IDENTITY_FILE = "identity.json"


class AnalyzeError(MammoSaeError):
    """The analysis was asked for something it cannot do (bad flags, mismatched inputs, no images)."""


@dataclass(frozen=True)
class AnalyzeConfig:
    """Every knob of `python -m mammo_sae.analyze`."""

    data: str = knob(REQUIRED, "VinDr-Mammo layout root (real release or phantoms)")
    classifier: tuple[str, ...] = knob(
        REQUIRED,
        "classifier file (project .safetensors or Mammo-CLIP downstream .pth); repeat for more heads",
        repeat=True,
    )
    sae: str = knob(REQUIRED, "SAE folder (sae_weights.safetensors + cfg.json)")
    out: str = knob(
        REQUIRED, "bundle folder to write (resumed if an unfinished run of the same inputs is there)"
    )
    backbone: str | None = knob(
        None, "backbone spec for the features (default: the first classifier's encoder)"
    )
    split: str = knob("test", "split to analyse (codes, patches, maps, localisation, curves)", choices=SPLITS)
    score_split: str = knob("training", "split whose class-wise means rank the latents", choices=SPLITS)
    score_data: str | None = knob(
        None, "root holding the score split (default: --data), e.g. the training phantoms"
    )
    limit: int | None = knob(None, "only the first N images of each split")
    concepts: str | None = knob(None, "comma-separated label columns to score (default: mass,calcification)")
    rank_by: str = knob(
        "deviation",
        "concept score that ranks latents: class mean (minus the all-image mean) of per-image mean or peak "
        "activations, or the class AUROC of either",
        choices=RANK_BY,
    )
    pointing_tolerance: float = knob(
        15.0, "pointing game: a peak within this many original-image pixels of a box is a hit (0 = inside)"
    )
    ks: str = knob("paper", "k values of the keep/suppress curves: 'paper' or e.g. 0,1,5,10,all")
    top_patches: int = knob(32, "top-activating patches kept per latent (one per image)")
    localise_top: int = knob(10, "latents per concept and class whose maps are scored against the boxes")
    threshold: str = knob(
        "fraction",
        "latent-map threshold: a fraction of the map's max, or a percentile",
        choices=("fraction", "percentile"),
    )
    threshold_value: float | None = knob(
        None, "threshold value (default 0.3 for fraction, 95 for percentile)"
    )
    codes_top_n: int | None = knob(
        None, "keep at most N latents per token in the stored codes (default: all)"
    )
    batch_size: int = knob(4, "images per forward pass")
    workers: int = knob(2, "DataLoader processes decoding and preprocessing images")
    chunk_images: int = knob(32, "images per committed chunk (the unit of resume)")
    device: str = knob("cpu", "where the models run", choices=("cpu", "cuda"))
    overwrite: bool = knob(False, "replace a complete bundle or an unfinished run of other inputs in --out")
    progress: bool = knob(True, "show a progress bar")

    def validate(self) -> AnalyzeConfig:
        for name in ("top_patches", "localise_top", "batch_size", "chunk_images"):
            if getattr(self, name) < 1:
                raise AnalyzeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise AnalyzeError(f"--workers must be >= 0, got {self.workers}")
        if self.codes_top_n is not None and self.codes_top_n < 1:
            raise AnalyzeError(f"--codes-top-n must be >= 1, got {self.codes_top_n}")
        if not (math.isfinite(self.pointing_tolerance) and self.pointing_tolerance >= 0):
            raise AnalyzeError(
                f"--pointing-tolerance must be a number >= 0 (pixels), got {self.pointing_tolerance}"
            )
        if not self.classifier:
            raise AnalyzeError("give at least one --classifier FILE")
        self.map_threshold()
        self.k_values()
        return self

    def k_values(self) -> tuple[int | None, ...]:
        try:
            return parse_ks(self.ks)
        except MammoSaeError as error:
            raise AnalyzeError(f"--ks: {error}") from None

    def map_threshold(self) -> MapThreshold:
        value = self.threshold_value
        if value is None:
            value = 0.3 if self.threshold == "fraction" else 95.0
        try:
            return MapThreshold(method=self.threshold, value=float(value))
        except MammoSaeError as error:
            raise AnalyzeError(f"--threshold-value: {error}") from None

    def command(self) -> str:
        """The command line that (re)builds this bundle."""
        parts = ["python -m mammo_sae.analyze", f"--data {self.data}"]
        parts += [f"--classifier {path}" for path in self.classifier]
        parts += [f"--sae {self.sae}", f"--out {self.out}"]
        defaults = AnalyzeConfig(data="", classifier=("",), sae="", out="")
        for name in (
            "backbone",
            "split",
            "score_split",
            "score_data",
            "limit",
            "concepts",
            "rank_by",
            "ks",
            "top_patches",
            "localise_top",
            "threshold",
            "threshold_value",
            "codes_top_n",
        ):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                parts.append(f"--{name.replace('_', '-')} {value}")
        return " ".join(parts)


# --- inputs ---------------------------------------------------------------------------------------------


@dataclass
class LoadedInputs:
    classifiers: list[Classifier]
    backbone: Backbone
    backbone_source: str
    sae: SparseAutoencoder
    tasks: tuple[str, ...]
    frame_size: tuple[int, int]
    warnings: list[str]


def load_inputs(config: AnalyzeConfig, device: torch.device) -> LoadedInputs:
    """Classifiers, backbone and SAE, checked against each other before any image is read."""
    classifiers = [load_classifier(path) for path in config.classifier]
    source = "spec" if config.backbone else "classifier"
    backbone = create_backbone(config.backbone) if config.backbone else classifiers[0].backbone
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
    sae = load_sae(config.sae, expect_d_in=backbone.num_features, device=device).eval()
    meta = getattr(sae, "metadata", {}) or {}
    warnings = []
    layer = meta.get("layer")
    if layer is not None and layer != backbone.default_layer:
        raise AnalyzeError(
            f"the SAE in {config.sae} was trained on layer {layer!r} but the heads read {backbone.default_layer!r}: "
            "interventions need an SAE trained on the head layer"
        )
    identity = meta.get("store_identity") or {}
    frame = (identity.get("preprocessing") or {}).get("frame_size")
    frame_size = (int(frame[0]), int(frame[1])) if frame else (1520, 912)
    if not frame:
        warnings.append("the SAE does not record its frame size; the Mammo-CLIP frame 1520x912 was used")
    trained_on = (meta.get("backbone") or {}).get("architecture")
    if trained_on and trained_on != backbone.architecture:
        raise AnalyzeError(
            f"the SAE was trained on {trained_on} features, the backbone here is {backbone.architecture}"
        )
    trained = meta.get("backbone") or {}
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
    index: VindrIndex, split: str, limit: int | None
) -> tuple[list[AnalysisRecord], dict[str, str]]:
    records, missing = select_records(index, split, limit)
    out = [AnalysisRecord(i, r.image_id, r.dicom_path) for i, r in enumerate(records)]
    if not out:
        raise AnalyzeError(f"no readable images in split {split!r}")
    return out, missing


# --- the run ---------------------------------------------------------------------------------------------


def run_identity(config: AnalyzeConfig, fingerprints: dict[str, Any]) -> str:
    knobs = {
        k: v
        for k, v in asdict(config).items()
        if k not in ("out", "batch_size", "workers", "device", "overwrite", "progress")
    }
    return sha256_json({"config": knobs, "inputs": fingerprints, "package_version": __version__})


def portable(fingerprints: dict[str, Any]) -> dict[str, Any]:
    """Fingerprints without dataset locations (a moved dataset with the same content is the same input)."""
    out = dict(fingerprints)
    for key in ("dataset", "score_dataset"):
        if out.get(key):
            out[key] = {k: v for k, v in out[key].items() if k != "root"}
    return out


def prepare_out(out: Path, run_id: str, overwrite: bool) -> str:
    """'done' when the same bundle is already complete, else 'run' with ``out/work`` ready.

    A complete bundle being replaced (``overwrite``) stays whole until the new one is assembled, so a run
    that fails on the way (a full disk, a kill) leaves it usable."""
    work = out / WORK_DIR
    if (out / MANIFEST).is_file():
        try:
            manifest = read_manifest(out)
        except BundleError:
            manifest = {}
        if manifest.get("run_id") == run_id and not overwrite:
            shutil.rmtree(work, ignore_errors=True)  # left behind when a kill cut the final clean-up
            return "done"
        if not overwrite:
            raise AnalyzeError(
                f"{out} already holds a complete bundle of other inputs or settings; pass --overwrite to replace "
                "it or choose another --out"
            )
    if work.is_dir():
        recorded = _read_identity(work)
        if recorded is None:  # killed before its identity was written: nothing in it can be trusted
            shutil.rmtree(work)
        elif recorded != run_id:
            if not overwrite:
                raise AnalyzeError(
                    f"{work} holds an unfinished analysis of other inputs or settings; pass --overwrite to discard "
                    "it or choose another --out"
                )
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / IDENTITY_FILE, json.dumps({"run_id": run_id}))
    return "run"


def _read_identity(work: Path) -> str | None:
    try:
        return json.loads((work / IDENTITY_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def chunk_path(work: Path, kind: str, i: int) -> Path:
    return work / f"{kind}-{i:05d}.npz"


def stream_split(
    records: list[AnalysisRecord],
    kind: str,
    work: Path,
    models: Models,
    config: AnalyzeConfig,
    frame_size: tuple[int, int],
    bar: tqdm,
) -> list[Path]:
    """Run every missing chunk of a split; returns all chunk paths in order."""
    paths = []
    for i, start in enumerate(range(0, len(records), config.chunk_images)):
        chunk = records[start : start + config.chunk_images]
        path = chunk_path(work, kind, i)
        paths.append(path)
        if path.is_file():
            try:
                ChunkResult.load(path, models.sae.d_sae)
                bar.update(len(chunk))
                continue
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                path.unlink()  # a damaged chunk is recomputed
        result = run_chunk(
            chunk,
            models,
            frame_size,
            keep_codes=kind == "analysis",
            top_n=config.codes_top_n,
            batch_size=config.batch_size,
            workers=config.workers,
            on_batch=bar.update,
        )
        result.save(path)
    return paths


def analyze(config: AnalyzeConfig) -> dict[str, Any]:
    """Run (or resume) an analysis and return its JSON summary."""
    config.validate()
    started = time.perf_counter()
    out = Path(config.out)
    device = device_for(LOCAL, config.device)
    index = VindrIndex.load(config.data)
    concepts = choose_concepts(config, index)
    score_index = index if config.score_data is None else VindrIndex.load(config.score_data)
    lacking = [c for c in concepts if c not in score_index.categories]
    if lacking:
        raise AnalyzeError(f"the score data {config.score_data} has no label columns {lacking}")
    inputs = load_inputs(config, device)
    records, missing = split_records(index, config.split, config.limit)
    same_split = config.score_split == config.split
    score_records, score_missing = (
        (records, missing) if same_split else split_records(score_index, config.score_split, config.limit)
    )
    out.mkdir(parents=True, exist_ok=True)
    fingerprints = {
        "dataset": dataset_fingerprint(config.data, out),
        "score_dataset": None if config.score_data is None else dataset_fingerprint(config.score_data, out),
        "backbone": backbone_fingerprint(inputs.backbone, inputs.backbone_source, out),
        "classifiers": [file_fingerprint(path, out) for path in config.classifier],
        "sae": sae_fingerprint(config.sae, out),
    }
    run_id = run_identity(config, portable(fingerprints))
    if prepare_out(out, run_id, config.overwrite) == "done":
        return read_manifest(out)["summary"] | {"bundle": str(out), "resumed": "already complete"}
    weights, biases = stacked_heads(inputs.classifiers, inputs.tasks)
    models = Models(
        # channels-last weights to match the channels-last input (as extraction does): 1.5x faster on CPU
        feature_model=(inputs.classifiers[0] if inputs.backbone_source == "classifier" else _wrap(inputs)).to(
            memory_format=torch.channels_last
        ),
        heads_w_hd=weights.to(device),
        heads_b_h=biases.to(device),
        sae=inputs.sae,
        device=device,
    )
    total = len(records) + (0 if same_split else len(score_records))
    work = out / WORK_DIR
    with tqdm(total=total, desc="analyze", unit="img", disable=not config.progress) as bar:
        analysis_chunks = stream_split(records, "analysis", work, models, config, inputs.frame_size, bar)
        score_chunks = (
            analysis_chunks
            if same_split
            else stream_split(score_records, "score", work, models, config, inputs.frame_size, bar)
        )
    (out / MANIFEST).unlink(missing_ok=True)  # the bundle being replaced is incomplete from here on
    summary = assemble_bundle(
        out=out,
        config=config,
        index=index,
        score_index=score_index,
        inputs=inputs,
        concepts=concepts,
        records=records,
        score_records=score_records,
        analysis_chunks=analysis_chunks,
        score_chunks=score_chunks,
        missing={**missing, **score_missing},
        fingerprints=fingerprints,
        run_id=run_id,
        heads=(weights.numpy(), biases.numpy()),
    )
    shutil.rmtree(work, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


def _wrap(inputs: LoadedInputs) -> Classifier:
    """A classifier shell around a spec-built backbone (only its backbone is used for features)."""
    return Classifier.create(inputs.backbone, {inputs.tasks[0]: 1})
