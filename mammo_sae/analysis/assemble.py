"""Turn an analysis run's chunks into the bundle's tables, arrays, charts, report and manifest.

Each step is a function of arrays and tables (tested on its own); this module only feeds them and
writes the results. Files are written atomically and the manifest last.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from mammo_sae import __version__
from mammo_sae.analysis import charts, report
from mammo_sae.analysis.codes import TokenCodes, save_concatenation
from mammo_sae.analysis.frames import transform_from_json
from mammo_sae.analysis.interventions import CurveInputs, HeadLinear, intervention_curves, shortcut_logits
from mammo_sae.analysis.latent_stats import latent_histograms, latent_summary
from mammo_sae.analysis.localisation import localise
from mammo_sae.analysis.patches import TopPatches, patch_boxes
from mammo_sae.analysis.peaks import RELEASE_EVERY, PointingScreen, pointing_tolerances, truth_boxes
from mammo_sae.analysis.scores import (
    ClassMeans,
    class_aurocs,
    rank_latents,
    ranking_table,
    with_aurocs,
    with_peaks,
)
from mammo_sae.analysis.stream import ChunkResult
from mammo_sae.bundle import format as bf
from mammo_sae.core.atomic import atomic_open
from mammo_sae.core.metrics import auprc, auroc
from mammo_sae.core.page_release import release_pages
from mammo_sae.data.vindr import VindrIndex

if TYPE_CHECKING:
    from mammo_sae.analysis.frames import AnalysisRecord
    from mammo_sae.analysis.run import AnalyzeConfig, LoadedInputs

IMAGE_COLUMNS = ("image_id", "study_id", "laterality", "view", "split", "breast_birads", "breast_density")


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        frame.to_parquet(handle, index=False)


def write_npy(array: np.ndarray, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array)


def n_tokens_of(chunks: list[ChunkResult]) -> int:
    return int(sum(c.recon[0] for c in chunks))


def image_table(
    index: VindrIndex, records: list[AnalysisRecord], chunks: list[ChunkResult], concepts: tuple[str, ...]
) -> pd.DataFrame:
    """One row per analysed image, in bundle order (records that loaded, in split order)."""
    positions = np.concatenate([c.positions for c in chunks])
    ids = [records[int(p)].image_id for p in positions]
    info = index.images.set_index("image_id")
    columns = [c for c in IMAGE_COLUMNS[1:] if c in info.columns] + list(index.categories)
    table = info.loc[ids, columns].reset_index()
    table.insert(0, "position", np.arange(len(table), dtype=np.int64))
    table["transform"] = [t for c in chunks for t in c.transforms]
    assert set(concepts) <= set(table.columns)
    return table


def row_table(index: VindrIndex, split: str, images: pd.DataFrame) -> pd.DataFrame:
    """The finding-CSV rows of the analysed images (the published per-row evaluation unit)."""
    rows = index.labels("row", split=None if split == "all" else split)
    position = pd.Series(images["position"].to_numpy(), index=images["image_id"])
    rows = rows[rows["image_id"].isin(position.index)].copy()
    rows.insert(0, "position", position.loc[rows["image_id"]].to_numpy())
    return rows.reset_index(drop=True)


def class_scores(
    paths: list[Path],
    records: list[AnalysisRecord],
    index: VindrIndex,
    concepts: tuple[str, ...],
    d_sae: int,
    scratch: Path,
) -> pd.DataFrame:
    """The score table of a split: class-wise means of per-image mean and peak latents (one chunk in memory
    at a time) and their class AUROCs (per-image values kept in memory maps under ``scratch``)."""
    labels = index.images.set_index("image_id")[list(concepts)]
    means, peaks = ClassMeans(d_sae, concepts), ClassMeans(d_sae, concepts)
    n_images = sum(len(ChunkResult.load(path, d_sae, heavy=False).positions) for path in paths)
    scratch.mkdir(parents=True, exist_ok=True)
    zbar_file = np.lib.format.open_memmap(scratch / "score_zbar.npy", "w+", np.float32, (n_images, d_sae))
    zmax_file = np.lib.format.open_memmap(scratch / "score_zmax.npy", "w+", np.float32, (n_images, d_sae))
    ids: list[str] = []
    for path in paths:
        chunk = ChunkResult.load(path, d_sae)
        if len(chunk.positions):
            chunk_ids = [records[int(p)].image_id for p in chunk.positions]
            chunk_labels = labels.loc[chunk_ids].reset_index(drop=True)
            means.update(chunk.zbar_nl, chunk_labels)
            peaks.update(chunk.zmax_nl, chunk_labels)
            zbar_file[len(ids) : len(ids) + len(chunk_ids)] = chunk.zbar_nl
            zmax_file[len(ids) : len(ids) + len(chunk_ids)] = chunk.zmax_nl
            release_pages(zbar_file, zmax_file)  # written rows stay in the files, not in memory
            ids += chunk_ids
    assert len(ids) == n_images, "every loaded image has its row in the memory maps"
    all_labels = labels.loc[ids].reset_index(drop=True)
    table = with_peaks(means.table(), peaks.table())
    table = with_aurocs(
        table,
        class_aurocs(zbar_file, all_labels, concepts),
        class_aurocs(zmax_file, all_labels, concepts),
        concepts,
    )
    del zbar_file, zmax_file
    for name in ("score_zbar.npy", "score_zmax.npy"):
        (scratch / name).unlink()
    return table


def evaluation_units(images: pd.DataFrame, rows: pd.DataFrame, tasks: tuple[str, ...]) -> tuple[dict, dict]:
    """Positions and labels per unit ("image": one per image; "row": one per finding-CSV row)."""
    units = {"image": images["position"].to_numpy(), "row": rows["position"].to_numpy()}
    labels = {
        "image": {t: images[t].to_numpy() for t in tasks if t in images},
        "row": {t: rows[t].to_numpy() for t in tasks if t in rows},
    }
    return units, labels


def baseline_table(logits: dict[str, np.ndarray], tasks, units, labels) -> pd.DataFrame:
    """AUROC/AUPRC of each head with the original features, the SAE reconstruction, and reconstruction + error."""
    records = []
    for unit, positions in units.items():
        for h, task in enumerate(tasks):
            if task not in labels[unit]:
                continue
            y = labels[unit][task]
            for variant, values in logits.items():
                scores = values[positions, h]
                records.append(
                    {
                        "head": task,
                        "unit": unit,
                        "variant": variant,
                        "n": len(y),
                        "positives": int(np.sum(y == 1)),
                        "auroc": auroc(y, scores),
                        "auprc": auprc(y, scores),
                    }
                )
    return pd.DataFrame.from_records(records)


def patch_table(patches: pd.DataFrame, images: pd.DataFrame, grid, frame_size) -> pd.DataFrame:
    """Top patches with the image id, the token cell in frame pixels and in original pixels."""
    if patches.empty:
        return patches.assign(
            image_id=[], **{f"{p}{c}": [] for p in ("frame_", "orig_") for c in ("x0", "y0", "x1", "y1")}
        )
    frame = patch_boxes(patches["row"].to_numpy(), patches["col"].to_numpy(), grid, frame_size)
    original = np.empty_like(frame)
    transforms = images["transform"].to_numpy()
    for image in np.unique(patches["image"].to_numpy()):
        rows = np.flatnonzero(patches["image"].to_numpy() == image)
        original[rows] = transform_from_json(transforms[image]).boxes_to_original(frame[rows])
    out = patches.copy()
    out.insert(3, "image_id", images["image_id"].to_numpy()[patches["image"].to_numpy()])
    for j, name in enumerate(("x0", "y0", "x1", "y1")):
        out[f"frame_{name}"] = frame[:, j].astype(np.float32)
        out[f"orig_{name}"] = original[:, j].astype(np.float32)
    return out


def latent_maps(
    codes: TokenCodes, positions: list[int], latent: int, release_every: int = RELEASE_EVERY
) -> list[np.ndarray]:
    """One latent's token maps on the images at ``positions``; memory-mapped codes give their pages back
    every ``release_every`` images, so the pass does not keep the codes of every image with a box."""
    maps = []
    for i, position in enumerate(positions, start=1):
        maps.append(codes.latent_map(position, latent))
        if i % release_every == 0:
            codes.release()
    codes.release()
    return maps


def localisation_table(
    codes: TokenCodes,
    boxes: pd.DataFrame,
    rankings: dict[tuple[str, int], np.ndarray],
    frame_size: tuple[int, int],
    config: AnalyzeConfig,
    extra_targets: tuple[str, ...],
) -> pd.DataFrame:
    """Pointing game, IoU and AP of the top latents of each concept and class, on the images holding boxes
    of that concept (and of each extra target kind, e.g. the phantoms' burned-in markers). ``boxes`` carries
    each box's pointing ``tolerance`` in frame px."""
    threshold = config.map_threshold()
    records = []
    for (concept, cls), ranked in rankings.items():
        for target in (concept, *extra_targets):
            target_boxes = boxes[boxes["kind"] == target]
            groups = {
                int(k): g[["frame_x0", "frame_y0", "frame_x1", "frame_y1"]].to_numpy()
                for k, g in target_boxes.groupby("position")
            }
            positions = sorted(groups)
            tolerance = target_boxes.groupby("position")["tolerance"].first()
            tolerances = [float(tolerance.loc[p]) for p in positions]
            for rank, latent in enumerate(ranked[: config.localise_top]):
                maps = latent_maps(codes, positions, int(latent))
                result = localise(
                    maps, [groups[p] for p in positions], frame_size, threshold, tolerances=tolerances
                )
                records.append(
                    {"concept": concept, "cls": cls, "rank": rank, "latent": int(latent), "target": target}
                    | result.as_dict()
                )
    return pd.DataFrame.from_records(records)


def assemble_bundle(
    *,
    out: Path,
    config: AnalyzeConfig,
    index: VindrIndex,
    score_index: VindrIndex,
    inputs: LoadedInputs,
    concepts: tuple[str, ...],
    records: list[AnalysisRecord],
    score_records: list[AnalysisRecord],
    analysis_chunks: list[Path],
    score_chunks: list[Path],
    missing: dict[str, str],
    fingerprints: dict[str, Any],
    run_id: str,
    heads: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    sae, tasks, frame_size = inputs.sae, inputs.tasks, inputs.frame_size
    d_sae = sae.d_sae
    out.mkdir(parents=True, exist_ok=True)
    light = [ChunkResult.load(path, d_sae, heavy=False) for path in analysis_chunks]
    skipped = {records[p].image_id: e for c in light for p, e in c.errors.items()}
    n_images = sum(len(c.positions) for c in light)
    if not n_images:
        raise bf.BundleError(
            f"none of the {len(records)} images of split {config.split!r} could be read: {skipped}"
        )
    images = image_table(index, records, light, concepts)
    rows = row_table(index, config.split, images)
    grid = next(c.grid for c in light if c.grid is not None)
    logit_original = np.concatenate([c.logit_original_nh for c in light])
    error_term = np.concatenate([c.error_term_nh for c in light])
    recon = np.sum([c.recon for c in light], axis=0)

    # heavy data, one chunk at a time: mean latents, codes and top patches
    patches = TopPatches(d_sae, config.top_patches)
    zbar_file = np.lib.format.open_memmap(
        out / (bf.MEAN_LATENTS + ".partial"), "w+", np.float32, (n_images, d_sae)
    )

    def heavy_parts():
        offset = 0
        for path in analysis_chunks:
            chunk = ChunkResult.load(path, d_sae)
            if chunk.codes is None:
                continue
            zbar_file[offset : offset + chunk.codes.n_images] = chunk.zbar_nl
            release_pages(zbar_file)  # written rows stay in the file, not in this process's memory
            patches.update(chunk.codes, offset)
            offset += chunk.codes.n_images
            yield chunk.codes

    save_concatenation(
        out / bf.CODES_DIR,
        heavy_parts(),
        grid=grid,
        d_sae=d_sae,
        n_images=n_images,
        nnz=sum(c.nnz for c in light),
    )
    zbar_file.flush()
    os.replace(out / (bf.MEAN_LATENTS + ".partial"), out / bf.MEAN_LATENTS)
    codes = TokenCodes.load(out / bf.CODES_DIR)
    zbar_nl = np.load(out / bf.MEAN_LATENTS, mmap_mode="r")

    head = HeadLinear.from_weights(
        tasks,
        sae.W_dec.detach().double().cpu().numpy(),
        sae.b_dec.detach().double().cpu().numpy(),
        heads[0],
        heads[1],
    )
    logit_sae = shortcut_logits(zbar_nl, head)
    logit_sae_error = logit_sae + error_term
    for h, task in enumerate(tasks):
        images[f"logit_{task}_original"] = logit_original[:, h]
        images[f"logit_{task}_sae"] = logit_sae[:, h]
        images[f"logit_{task}_sae_error"] = logit_sae_error[:, h]
        images[f"error_{task}"] = error_term[:, h]

    # concept scores on the score split
    scores = class_scores(
        score_chunks, score_records, score_index, concepts, d_sae, out / bf.WORK_DIR / "scores"
    )
    rankings = {}
    for concept in concepts:
        for cls in (0, 1):
            if int(scores.query("concept == @concept and cls == @cls")["n_images"].max()) == 0:
                inputs.warnings.append(
                    f"no {config.score_split} image has {concept} = {cls}: its latents are not ranked"
                )
                rankings[(concept, cls)] = np.zeros(0, dtype=np.int64)
            else:
                rankings[(concept, cls)] = rank_latents(scores, concept, cls, config.rank_by)
    ranked = ranking_table(scores, concepts, config.rank_by)

    # per latent
    latents = latent_summary(codes)
    fired_l = np.sum([c.fired_l for c in light], axis=0)
    stored_frequency = latents["frequency"].to_numpy()
    latents["frequency"] = fired_l / n_tokens_of(light)  # every code, before the stored top-n cut
    latents["stored_frequency"] = stored_frequency
    hist = latent_histograms(codes, latents["max"].to_numpy())
    latents["hist_max"] = latents["max"]
    for h, task in enumerate(tasks):
        latents[f"effect_{task}"] = head.effect_lh[:, h]
    for (concept, cls), group in scores.groupby(["concept", "cls"]):
        group = group.sort_values("latent")
        latents[f"zbar_{concept}_{cls}"] = group["zbar"].to_numpy()
        latents[f"score_{concept}_{cls}"] = group["deviation"].to_numpy()
        latents[f"peak_score_{concept}_{cls}"] = group["peak_deviation"].to_numpy()
        latents[f"peak_auroc_{concept}_{cls}"] = group["peak_auroc"].to_numpy()
    boxes = truth_boxes(index, config.data, images, frame_size)
    screen = PointingScreen(grid, frame_size, d_sae)
    extra = tuple(sorted(set(boxes["kind"]) - set(concepts)))
    tolerant = boxes.assign(tolerance=pointing_tolerances(boxes, config.pointing_tolerance))
    for kind in (*concepts, *extra):
        latents = latents.join(screen.run(codes, tolerant[tolerant["kind"] == kind], kind))
        codes.release()  # the screen read the codes of every image holding this kind of box

    patch_frame = patch_table(patches.result(), images, grid, frame_size)
    localisation = localisation_table(
        codes, tolerant, rankings, frame_size, config, tuple(k for k in extra if k == "marker")
    )

    units, labels = evaluation_units(images, rows, tasks)
    baselines = baseline_table(
        {"original": logit_original, "sae": logit_sae, "sae_error": logit_sae_error}, tasks, units, labels
    )
    curve_inputs = [CurveInputs(c, rankings[(c, 0)], rankings[(c, 1)]) for c in concepts]
    curves = pd.concat(
        [
            intervention_curves(
                zbar_nl, head, curve_inputs, labels, ks=config.k_values(), units=units
            ).assign(error_term=False),
            intervention_curves(
                zbar_nl, head, curve_inputs, labels, ks=config.k_values(), error_nh=error_term, units=units
            ).assign(error_term=True),
        ],
        ignore_index=True,
    )

    # write
    write_parquet(images, out / bf.IMAGES)
    write_parquet(rows, out / bf.ROWS)
    with atomic_open(out / bf.HEADS, "wb") as handle:
        np.savez(
            handle,
            tasks=np.array(tasks),
            effect_lh=head.effect_lh,
            const_h=head.const_h,
            weight_hd=heads[0],
            bias_h=heads[1],
        )
    write_parquet(latents.reset_index(names="latent"), out / bf.LATENTS)
    write_npy(hist, out / bf.HISTOGRAMS)
    write_parquet(scores, out / bf.SCORES)
    write_parquet(ranked, out / bf.RANKINGS)
    write_parquet(patch_frame, out / bf.PATCHES)
    write_parquet(boxes, out / bf.BOXES)
    write_parquet(localisation, out / bf.LOCALISATION)
    write_parquet(baselines, out / bf.BASELINES)
    write_parquet(curves, out / bf.CURVES)
    with atomic_open(out / bf.CURVES_JSON, "w") as handle:
        handle.write(
            curves.astype({"k": "object"}).where(curves.notna(), None).to_json(orient="records", indent=1)
        )
    synthetic = fingerprints["dataset"]["kind"] == "synthetic phantoms"
    chart = charts.curves_chart(curves[(curves["unit"] == "image") & ~curves["error_term"]])
    charts.save_chart(chart, out / bf.CURVES_SPEC, out / bf.CURVES_PNG)

    n_tokens, sse, l0 = recon[0], recon[1], recon[2]
    d_in = sae.d_in
    sum_x, sum_x2 = recon[3 : 3 + d_in], recon[3 + d_in :]
    sst = float(np.sum(sum_x2 - sum_x**2 / n_tokens))
    quality = {
        "tokens": int(n_tokens),
        "fvu": float(sse / sst) if sst > 0 else float("nan"),
        "l0": float(l0 / n_tokens),
        "dead_fraction": float(np.mean(fired_l == 0)),
        "dense_fraction": float(np.mean(latents["frequency"].to_numpy() > 0.1)),
    }
    summary = report.headline(baselines, curves, localisation, quality, tasks, concepts)
    summary |= {"images": len(images), "skipped": len(skipped) + len(missing), "synthetic": synthetic}
    manifest_base = {
        "format": bf.FORMAT,
        "format_version": bf.FORMAT_VERSION,
        "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "run_id": run_id,
        "command": config.command(),
        "config": asdict(config),
        "dataset_kind": fingerprints["dataset"]["kind"],
        "synthetic": synthetic,
        "inputs": fingerprints,
        "tasks": list(tasks),
        "concepts": list(concepts),
        "splits": {"analysis": config.split, "score": config.score_split},
        "frame_size": list(frame_size),
        "grid": list(grid),
        "sae": {"architecture": sae.architecture, "d_in": sae.d_in, "d_sae": d_sae, "hparams": sae.hparams},
        "skipped": {**skipped, **missing},
        "warnings": inputs.warnings,
        "summary": summary,
    }
    n_markers = int((boxes["kind"] == "marker").sum())
    text = report.render(manifest_base, baselines, curves, localisation, ranked, latents, quality, n_markers)
    with atomic_open(out / bf.REPORT, "w") as handle:
        handle.write(text)
    outputs = [
        bf.IMAGES,
        bf.ROWS,
        bf.MEAN_LATENTS,
        bf.CODES_DIR,
        bf.HEADS,
        bf.LATENTS,
        bf.HISTOGRAMS,
        bf.SCORES,
        bf.RANKINGS,
        bf.PATCHES,
        bf.BOXES,
        bf.LOCALISATION,
        bf.BASELINES,
        bf.CURVES,
        bf.CURVES_JSON,
        bf.CURVES_SPEC,
        bf.CURVES_PNG,
        bf.REPORT,
    ]
    manifest = manifest_base | {"files": bf.file_records(out, outputs)}
    bf.write_manifest(out, manifest)
    return summary | {"bundle": str(out)}
