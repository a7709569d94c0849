"""`analyze`: stream a split through backbone + SAE into committed chunks, then assemble the bundle.

    config = AnalyzeConfig(data="data/phantoms", classifier=("clf.safetensors",), sae="runs/sae", out="bundle")
    summary = analyze(config)

Rerunning the same config resumes an interrupted run at its first missing chunk, or does nothing when the
bundle is complete. The finished bundle's manifest names no path of this machine outside the bundle; this
machine's user data folder remembers where the inputs were (``bundle.locations``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mammo_sae.analysis.frames import resolve_frames
from mammo_sae.bundle.fingerprints import (
    backbone_fingerprint,
    dataset_fingerprint,
    file_fingerprint,
    sae_fingerprint,
)
from mammo_sae.bundle.format import MANIFEST, WORK_DIR, read_manifest
from mammo_sae.bundle.locations import remember
from mammo_sae.bundle.writing.assemble import Split, assemble_bundle
from mammo_sae.bundle.writing.config import AnalyzeConfig, AnalyzeError
from mammo_sae.bundle.writing.counterfactual import marker_counterfactuals
from mammo_sae.bundle.writing.files import BundleWriter
from mammo_sae.bundle.writing.manifest import local_command, run_identity
from mammo_sae.bundle.writing.models import (
    LoadedInputs,
    choose_concepts,
    chunk_models,
    load_inputs,
    split_records,
)
from mammo_sae.bundle.writing.score_bundle import ScoreSource, load_score_bundle
from mammo_sae.bundle.writing.work import prepare_out, stream_split
from mammo_sae.core.distributed import LOCAL, device_for
from mammo_sae.data.frame_policy import FramePolicy
from mammo_sae.data.phantom import is_phantom_dataset
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.models import parse_spec


def fingerprints_of(
    config: AnalyzeConfig, inputs: LoadedInputs, out: Path, source: ScoreSource | None
) -> dict[str, Any]:
    return {
        "dataset": dataset_fingerprint(config.data, out),
        "score_dataset": None if config.score_data is None else dataset_fingerprint(config.score_data, out),
        "score_bundle": None if source is None else source.fingerprint,
        "backbone": backbone_fingerprint(inputs.backbone, inputs.backbone_source, out),
        "classifiers": [file_fingerprint(path, out) for path in config.classifier],
        "sae": sae_fingerprint(config.sae, out),
    }


def frame_policy(config: AnalyzeConfig, index: VindrIndex, inputs: LoadedInputs) -> FramePolicy:
    """The model-input frame policy of the analysed root (recorded as the manifest's ``"frames"``); a
    warning joins ``inputs.warnings`` when the SAE's training store was extracted from other frames."""
    policy, warnings = resolve_frames(
        config.frames, index, inputs.frame_size, getattr(inputs.sae, "metadata", None)
    )
    inputs.warnings += warnings
    return policy


def remember_locations(config: AnalyzeConfig, out: Path, run_id: str) -> None:
    """Where this machine keeps the inputs, for the reader (the manifest holds none of these paths)."""
    weights = parse_spec(config.backbone).path if config.backbone else None
    remember(
        out,
        run_id,
        {
            "dataset": config.data,
            "score_dataset": config.score_data,
            "classifiers": list(config.classifier),
            "sae": config.sae,
            "backbone_weights": weights,
            "command": local_command(config),
        },
    )


def unlabelled_split(config: AnalyzeConfig, index: VindrIndex, scores_labelled: bool) -> AnalyzeConfig:
    """The config for an unlabelled root (an imported DICOM folder): every image is analysed (its one split
    is ``unlabelled``: "test", the default, and "all" both mean it) and the concept ranking comes from
    labelled images (``scores_labelled``: a labelled score root, or a score bundle). A labelled root's config
    is returned as it is."""
    if index.labelled:
        return config
    if not scores_labelled:
        raise AnalyzeError(
            f"{config.data} is an imported DICOM folder without labels: the latents' concept ranking needs "
            "labelled images. Give --score-data ROOT (a labelled root such as VinDr-Mammo or the training "
            "phantoms) with --score-split, or --score-bundle BUNDLE (a bundle of the same SAE)"
        )
    if config.split == "training":
        raise AnalyzeError(
            f"{config.data} is an imported DICOM folder: it has no training or test split. Use --split all"
        )
    return replace(config, split="all")


def analyze(config: AnalyzeConfig) -> dict[str, Any]:
    """Run (or resume) an analysis and return its JSON summary."""
    config.validate()
    started = time.perf_counter()
    out = Path(config.out)
    device = device_for(LOCAL, config.device)
    index = VindrIndex.load(config.data)
    score_index = index if config.score_data is None else VindrIndex.load(config.score_data)
    source = None
    if config.score_bundle is not None:  # its scores rank the latents: no score split is streamed
        source = load_score_bundle(config.score_bundle, sae_fingerprint(config.sae, out), config.concepts)
        config = replace(config, score_split=source.split)
    config = unlabelled_split(config, index, source is not None or score_index.labelled)
    concepts = source.concepts if source is not None else choose_concepts(config, score_index)
    lacking = [c for c in concepts if source is None and c not in score_index.categories]
    if lacking:
        raise AnalyzeError(f"the score data {config.score_data} has no label columns {lacking}")
    inputs = load_inputs(config, device)
    frames = frame_policy(config, index, inputs)
    records, missing = split_records(index, config.split, config.limit, frames)
    score_frames = (  # "auto" is resolved once per dataset root
        frames
        if config.score_data is None
        else FramePolicy.resolve(config.frames, score_index, inputs.frame_size)
    )
    same_split = config.score_split == config.split and config.score_data is None and source is None
    if same_split:
        score_records, score_missing = records, missing
    elif source is not None:  # the score bundle's scores: no score split is read
        score_records, score_missing = [], {}
    else:
        score_records, score_missing = split_records(
            score_index, config.score_split, config.limit, score_frames
        )
    out.mkdir(parents=True, exist_ok=True)
    fingerprints = fingerprints_of(config, inputs, out, source)
    run_id = run_identity(config, fingerprints)
    if prepare_out(out, run_id, config.overwrite) == "done":
        remember_locations(config, out, run_id)
        return read_manifest(out)["summary"] | {"bundle": str(out), "resumed": "already complete"}
    models = chunk_models(inputs, device)
    counterfactuals = config.counterfactuals != "off" and is_phantom_dataset(config.data)
    total = len(records) * (2 if counterfactuals else 1) + (0 if same_split else len(score_records))
    work = out / WORK_DIR
    with tqdm(total=total, desc="analyze", unit="img", disable=not config.progress) as bar:
        analysis_chunks = stream_split(records, "analysis", work, models, config, inputs.frame_size, bar)
        score_chunks = (
            analysis_chunks
            if same_split or source is not None  # unused with a score bundle
            else stream_split(score_records, "score", work, models, config, inputs.frame_size, bar)
        )
        counterfactual = marker_counterfactuals(config, records, models, inputs.frame_size, work, bar)
    (out / MANIFEST).unlink(missing_ok=True)  # the bundle being replaced is incomplete from here on
    run = {
        "fingerprints": fingerprints,
        "run_id": run_id,
        "heads": (models.heads_w_hd.cpu().numpy(), models.heads_b_h.cpu().numpy()),
        "missing": {**missing, **score_missing},
        "frame_policy": frames,
        "counterfactual": counterfactual,  # None off phantoms or with --counterfactuals off
        "scores": None if source is None else source.scores,  # from --score-bundle
    }
    summary = assemble_bundle(
        BundleWriter(out),
        config,
        inputs,
        concepts,
        Split(index, records, analysis_chunks),
        Split(score_index, score_records, score_chunks),
        run,
    )
    remember_locations(config, out, run_id)
    shutil.rmtree(work, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary
