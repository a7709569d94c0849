"""Turn an analysis run's committed chunks into the bundle: the table builders of ``mammo_sae.analysis``
compute, the ``BundleWriter`` writes each file atomically, the report and the manifest come last."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae.analysis import charts, checks
from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.frames import AnalysisRecord
from mammo_sae.analysis.interventions import HeadLinear, shortcut_logits
from mammo_sae.analysis.latent_table import (
    concept_rankings,
    latent_table,
    localisation_table,
    with_pointing_screens,
)
from mammo_sae.analysis.patches import TopPatches
from mammo_sae.analysis.peaks import pointing_tolerances, truth_boxes
from mammo_sae.analysis.scores import ranking_table, split_scores
from mammo_sae.analysis.stream import ChunkResult
from mammo_sae.analysis.tables import (
    baseline_table,
    curves_table,
    evaluation_units,
    image_table,
    patch_table,
    row_table,
    with_logits,
)
from mammo_sae.bundle import format as bf
from mammo_sae.bundle.fingerprints import all_phantoms
from mammo_sae.bundle.writing.config import AnalyzeConfig
from mammo_sae.bundle.writing.counterfactual import (
    counterfactual_section,
    counterfactual_summary,
    counterfactual_tables,
)
from mammo_sae.bundle.writing.evidence_tables import EvidenceTables, evidence_tables, finding_categories
from mammo_sae.bundle.writing.files import BundleWriter
from mammo_sae.bundle.writing.manifest import build_manifest
from mammo_sae.bundle.writing.models import LoadedInputs
from mammo_sae.bundle.writing.orientation import orientation_table
from mammo_sae.bundle.writing.report import headline, render
from mammo_sae.bundle.writing.report_evidence import evidence_section, flag_counts, shortcut_section
from mammo_sae.bundle.writing.work import load_chunk
from mammo_sae.data.frame_policy import frame_policy_record
from mammo_sae.data.vindr import VindrIndex


@dataclass
class Split:
    """One analysed split: its dataset index, the records streamed and the chunk files holding them."""

    index: VindrIndex
    records: list[AnalysisRecord]
    chunks: list[Path]


@dataclass
class Streamed:
    """The light part of the analysed split's chunks (everything but codes and per-image latents)."""

    images: pd.DataFrame
    logit_original_nh: np.ndarray
    error_nh: np.ndarray
    recon: np.ndarray
    fired_l: np.ndarray
    grid: tuple[int, int]
    skipped: dict[str, str]
    nnz: int

    @property
    def n_images(self) -> int:
        return len(self.images)


def read_streamed(split: Split, d_sae: int, concepts: tuple[str, ...], name: str) -> Streamed:
    light = [load_chunk(path, d_sae, heavy=False) for path in split.chunks]
    skipped = {split.records[p].image_id: e for c in light for p, e in c.errors.items()}
    ids = [split.records[int(p)].image_id for c in light for p in c.positions]
    if not ids:
        raise bf.BundleError(
            f"none of the {len(split.records)} images of split {name!r} could be read: {skipped}"
        )
    return Streamed(
        images=image_table(split.index, ids, [t for c in light for t in c.transforms], concepts),
        logit_original_nh=np.concatenate([c.logit_original_nh for c in light]),
        error_nh=np.concatenate([c.error_term_nh for c in light]),
        recon=np.sum([c.recon for c in light], axis=0),
        fired_l=np.sum([c.fired_l for c in light], axis=0),
        grid=next(c.grid for c in light if c.grid is not None),
        skipped=skipped,
        nnz=sum(c.nnz for c in light),
    )


def write_codes(
    writer: BundleWriter, chunks: list[Path], streamed: Streamed, d_sae: int, patches: TopPatches
) -> tuple[TokenCodes, np.ndarray]:
    """Codes and mean latents into the bundle, and the top patches, one chunk in memory at a time."""

    def parts():
        offset = 0
        for path in chunks:
            chunk = load_chunk(path, d_sae)
            if chunk.codes is None:
                continue
            patches.update(chunk.codes, offset)
            offset += chunk.codes.n_images
            yield chunk.codes, chunk.zbar_nl

    return writer.codes_and_mean_latents(
        parts(), grid=streamed.grid, d_sae=d_sae, n_images=streamed.n_images, nnz=streamed.nnz
    )


def score_split(split: Split, concepts: tuple[str, ...], d_sae: int, scratch: Path) -> pd.DataFrame:
    """The score split's table, per-image rows kept in memory maps under ``scratch`` while its AUROCs rank."""
    labels = split.index.images.set_index("image_id")[list(concepts)]
    sizes = [len(load_chunk(path, d_sae, heavy=False).positions) for path in split.chunks]
    scratch.mkdir(parents=True, exist_ok=True)
    shape = (sum(sizes), d_sae)
    zbar_file = np.lib.format.open_memmap(scratch / "score_zbar.npy", "w+", np.float32, shape)
    zmax_file = np.lib.format.open_memmap(scratch / "score_zmax.npy", "w+", np.float32, shape)

    def chunks():
        for path in split.chunks:
            chunk: ChunkResult = load_chunk(path, d_sae)
            if len(chunk.positions):
                ids = [split.records[int(p)].image_id for p in chunk.positions]
                yield chunk.zbar_nl, chunk.zmax_nl, labels.loc[ids]

    table = split_scores(chunks(), concepts, d_sae, zbar_file, zmax_file)
    del zbar_file, zmax_file
    for name in ("score_zbar.npy", "score_zmax.npy"):
        (scratch / name).unlink()
    return table


@dataclass
class Tables:
    """Every table and array of a bundle, before it is written."""

    images: pd.DataFrame
    rows: pd.DataFrame
    head: HeadLinear
    heads: tuple[np.ndarray, np.ndarray]  # the stacked head weights [h, d] and biases [h]
    latents: pd.DataFrame
    hist: np.ndarray
    scores: pd.DataFrame
    ranked: pd.DataFrame
    patches: pd.DataFrame
    boxes: pd.DataFrame
    localisation: pd.DataFrame
    baselines: pd.DataFrame
    curves: pd.DataFrame
    labels: dict[str, dict[str, np.ndarray]]  # unit -> head -> labels (for the checks)
    warnings: list[str]
    evidence: EvidenceTables


def analysis_tables(
    writer: BundleWriter,
    config: AnalyzeConfig,
    inputs: LoadedInputs,
    concepts: tuple[str, ...],
    analysed: Split,
    scored: Split,
    streamed: Streamed,
    heads: tuple[np.ndarray, np.ndarray],
    given_scores: pd.DataFrame | None = None,
) -> Tables:
    """Stream the codes into the bundle, then compute every table from them (``mammo_sae.analysis``)."""
    sae, tasks, frame_size, d_sae = inputs.sae, inputs.tasks, inputs.frame_size, inputs.sae.d_sae
    patches = TopPatches(d_sae, config.top_patches)
    codes, zbar_nl = write_codes(writer, analysed.chunks, streamed, d_sae, patches)
    w_dec = sae.W_dec.detach().double().cpu().numpy()
    head = HeadLinear.from_weights(tasks, w_dec, sae.b_dec.detach().double().cpu().numpy(), *heads)
    logit_sae = shortcut_logits(zbar_nl, head)
    logits = {
        "original": streamed.logit_original_nh,
        "sae": logit_sae,
        "sae_error": logit_sae + streamed.error_nh,
    }
    images = with_logits(streamed.images, tasks, logits, streamed.error_nh)
    rows = row_table(analysed.index, config.split, images)

    scores = (  # a score bundle's, or the score split's own
        given_scores
        if given_scores is not None
        else score_split(scored, concepts, d_sae, writer.out / bf.WORK_DIR / "scores")
    )
    rankings = concept_rankings(scores, concepts, config.rank_by, config.score_split)
    latents, hist = latent_table(codes, streamed.fired_l, int(streamed.recon[0]), head, scores)
    boxes = truth_boxes(analysed.index, config.data, images, frame_size)
    extra = tuple(sorted(set(boxes["kind"]) - set(concepts)))
    tolerant = boxes.join(pointing_tolerances(boxes, config.pointing_tolerance))
    latents = with_pointing_screens(latents, codes, tolerant, (*concepts, *extra), streamed.grid, frame_size)
    markers = tuple(k for k in extra if k == "marker")
    evidence = evidence_tables(
        analysed.chunks,
        codes,
        zbar_nl,
        images,
        tolerant,
        latents,
        head,
        streamed.error_nh,
        finding_categories(concepts, analysed.index.categories),
        frame_size,
        config.region_settings(),
        config.flag_thresholds(),
    )
    latents = latents.join(evidence.profiles)
    localisation = localisation_table(
        codes, tolerant, rankings.by_class, frame_size, config.map_threshold(), config.localise_top, markers
    )
    units, labels = evaluation_units(images, rows, tasks)
    return Tables(
        images=images,
        rows=rows,
        head=head,
        heads=heads,
        latents=latents,
        hist=hist,
        scores=scores,
        ranked=ranking_table(scores, concepts, config.rank_by),
        patches=patch_table(patches.result(), images, streamed.grid, frame_size),
        boxes=tolerant,
        localisation=localisation,
        baselines=baseline_table(logits, tasks, units, labels),
        curves=curves_table(
            zbar_nl, head, rankings.by_class, concepts, labels, units, config.k_values(), streamed.error_nh
        ),
        labels=labels,
        warnings=rankings.warnings,
        evidence=evidence,
    )


def write_tables(writer: BundleWriter, t: Tables) -> None:
    """Every table, array and chart of the bundle (the codes and mean latents are already written)."""
    writer.parquet(bf.IMAGES, t.images)
    writer.parquet(bf.ROWS, t.rows)
    weight_hd, bias_h = t.heads
    writer.npz(
        bf.HEADS,
        tasks=np.array(t.head.tasks),
        effect_lh=t.head.effect_lh,
        const_h=t.head.const_h,
        weight_hd=weight_hd,
        bias_h=bias_h,
    )
    writer.parquet(bf.LATENTS, t.latents.reset_index(names="latent"))
    writer.npy(bf.HISTOGRAMS, t.hist)
    writer.npy(bf.EVIDENCE, t.evidence.evidence_nht)
    writer.npz(bf.REGIONS, labels=t.evidence.labels_nt, names=np.array(t.evidence.names))
    writer.parquet(bf.EVIDENCE_REGIONS, t.evidence.image_regions)
    writer.parquet(bf.EVIDENCE_SPLIT, t.evidence.split)
    writer.parquet(bf.SHORTCUTS, t.evidence.shortcuts)
    writer.parquet(bf.SCORES, t.scores)
    writer.parquet(bf.RANKINGS, t.ranked)
    writer.parquet(bf.PATCHES, t.patches)
    writer.parquet(bf.BOXES, t.boxes)  # with each box's pointing tolerance per axis (frame px)
    writer.parquet(bf.LOCALISATION, t.localisation)
    writer.parquet(bf.BASELINES, t.baselines)
    writer.parquet(bf.CURVES, t.curves)
    curves = t.curves
    writer.text(
        bf.CURVES_JSON,
        curves.astype({"k": "object"}).where(curves.notna(), None).to_json(orient="records", indent=1),
    )
    chart = charts.curves_chart(curves[(curves["unit"] == "image") & ~curves["error_term"]])
    charts.save_chart(chart, writer.out / bf.CURVES_SPEC, writer.out / bf.CURVES_PNG)
    writer.adopt(bf.CURVES_SPEC)
    writer.adopt(bf.CURVES_PNG)


def assemble_bundle(
    writer: BundleWriter,
    config: AnalyzeConfig,
    inputs: LoadedInputs,
    concepts: tuple[str, ...],
    analysed: Split,
    scored: Split,
    run: dict[str, Any],
) -> dict[str, Any]:
    """Write every file of the bundle, the report and the manifest (last); returns the summary. ``run`` holds
    the run's ``fingerprints``, ``run_id``, ``heads`` (stacked weights [h, d], biases [h]), ``missing``
    images, ``frame_policy`` (None before frame policies) ``counterfactual`` (the marker pairs, or None) and ``scores`` (a score bundle's, or None)."""
    tasks = inputs.tasks
    streamed = read_streamed(analysed, inputs.sae.d_sae, concepts, config.split)
    t = analysis_tables(
        writer, config, inputs, concepts, analysed, scored, streamed, run["heads"], run.get("scores")
    )
    write_tables(writer, t)

    frequency = t.latents["frequency"].to_numpy()
    quality = checks.reconstruction_quality(streamed.recon, streamed.fired_l, frequency, inputs.sae.d_in)
    policy = run["frame_policy"]
    frames = None if policy is None else frame_policy_record(policy, t.images["transform"])
    warnings = [
        *inputs.warnings,
        *t.warnings,
        *checks.logit_warnings(streamed.logit_original_nh, tasks),
        *checks.class_warnings(t.labels, tasks, config.split),
        *checks.quality_warnings(quality),
        *(frames["warnings"] if frames else []),
    ]
    noise_heads = frozenset(
        task
        for h, task in enumerate(tasks)
        if checks.noise_spread(streamed.logit_original_nh[:, h]) is not None
    )
    fingerprints = run["fingerprints"]
    orientation = orientation_table(config.data, t.images)
    if orientation is not None:
        writer.parquet(bf.ORIENTATION, orientation)
    counterfactual = None
    if run.get("counterfactual") is not None:
        heads = [task for task in tasks if task in t.images]  # heads with a label column
        counterfactual = counterfactual_tables(
            run["counterfactual"], t.head, t.images, heads, t.latents["flags"]
        )
        writer.parquet(bf.COUNTERFACTUAL, counterfactual["images"])
        writer.parquet(bf.COUNTERFACTUAL_LATENTS, counterfactual["carriers"])
    summary = headline(t.baselines, t.curves, t.localisation, quality, tasks, concepts)
    summary |= {
        "evidence_pointing": t.evidence.pointing.to_dict(orient="records"),
        "shortcut_summary": t.evidence.shortcut_summary.to_dict(orient="records"),
        "flags": flag_counts(t.evidence.profiles),
        "counterfactual": counterfactual_summary(counterfactual) if counterfactual is not None else None,
        "images": len(t.images),
        "skipped": len(streamed.skipped) + len(run["missing"]),
        "synthetic": all_phantoms(fingerprints["dataset"]),
    }
    manifest = build_manifest(
        config=config,
        fingerprints=fingerprints,
        run_id=run["run_id"],
        sae=inputs.sae,
        tasks=tasks,
        concepts=concepts,
        frame_size=inputs.frame_size,
        grid=streamed.grid,
        frames=frames,
        skipped={**streamed.skipped, **run["missing"]},
        warnings=warnings,
        summary=summary,
        labelled=analysed.index.labelled,
    )
    n_markers = int((t.boxes["kind"] == "marker").sum())
    report = render(
        manifest, t.baselines, t.curves, t.localisation, t.ranked, t.latents, quality, n_markers, noise_heads
    )
    report += "\n" + evidence_section(t.evidence) + "\n" + shortcut_section(t.evidence)
    if counterfactual is not None:
        report += "\n" + counterfactual_section(counterfactual, n_carriers=10)
    writer.text(bf.REPORT, report)
    writer.finish(manifest)
    return summary | {"bundle": str(writer.out), "warnings": warnings}
