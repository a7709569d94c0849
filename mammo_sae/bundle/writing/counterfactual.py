"""The marker counterfactual of a phantom bundle: every analysed image with and without its burned-in marker.

    result = marker_counterfactuals(config, records, models, frame_size, out / "work", bar)  # None off phantoms
    tables = counterfactual_tables(result, head, images, tasks)   # images, shift, aurocs, carriers
    report_md = counterfactual_section(tables)

Both versions of each image are rendered by the phantom generator from the dataset's own plan
(``data.phantom.counterfactual``), framed by the normal preprocessing and run through the backbone, SAE and
heads as ``analysis.stream`` runs the files (float64 head math). Results are committed in chunks
(``work/counterfactual-XXXXX.npz``, atomic) under the run's work folder and its identity, so an interrupted
run resumes; a damaged chunk, or one that covers other images, is recomputed.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from mammo_sae.analysis.counterfactual import (
    CARRIER_SHARE,
    adversarial_aurocs,
    marker_shift,
    shift_carriers,
)
from mammo_sae.analysis.frames import AnalysisRecord
from mammo_sae.analysis.interventions import HeadLinear
from mammo_sae.analysis.stream import Models, encode_map
from mammo_sae.bundle import format as bf
from mammo_sae.bundle.writing.config import AnalyzeConfig
from mammo_sae.core.atomic import atomic_open
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.phantom import MANIFEST, is_phantom_dataset
from mammo_sae.data.phantom.counterfactual import marker_frames
from mammo_sae.data.preprocess import model_input

KIND = "counterfactual"
#: the per-image table and the per-latent carriers table, as the bundle names them
IMAGES_FILE = bf.COUNTERFACTUAL
CARRIERS_FILE = bf.COUNTERFACTUAL_LATENTS
#: above this many bytes of mean latents (both versions) they are kept as memory maps under the work folder
MEMMAP_BYTES = 256 << 20


@dataclass
class CounterfactualResult:
    """Per analysed image: the logits with and without the marker, and both mean-latent vectors. The heads
    are in the models' order (``HeadLinear.tasks`` of the same run)."""

    table: pd.DataFrame  # position, image_id, had_marker, rescaled, same_crop
    logit_with_nh: np.ndarray  # [n, heads] float64
    logit_without_nh: np.ndarray
    zbar_with_nl: np.ndarray  # [n, d_sae] float32 (a memory map under work for large runs)
    zbar_without_nl: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)  # image_id -> why it has no pair

    def frame(self, tasks: Sequence[str]) -> pd.DataFrame:
        """The per-image table with ``logit_with_<task>`` and ``logit_without_<task>`` columns."""
        if len(tasks) != self.logit_with_nh.shape[1]:
            raise ValueError(f"name each of the {self.logit_with_nh.shape[1]} heads once; got {list(tasks)}")
        named = {f"logit_with_{t}": self.logit_with_nh[:, h] for h, t in enumerate(tasks)}
        named |= {f"logit_without_{t}": self.logit_without_nh[:, h] for h, t in enumerate(tasks)}
        return self.table.assign(**named)


PairItem = tuple[int, torch.Tensor | None, torch.Tensor | None, tuple[bool, bool, bool] | None, str | None]


class PairFrames(Dataset):
    """(position, model input with the marker, without it, (had_marker, rescaled, same_crop), error)."""

    def __init__(self, root: str, records: list[AnalysisRecord], frame_size: tuple[int, int]) -> None:
        self.root, self.records, self.frame_size = root, records, frame_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> PairItem:
        record = self.records[i]
        try:
            frames = marker_frames(self.root, record.image_id, self.frame_size, record.frames)
        except MammoSaeError as error:
            return record.position, None, None, None, str(error)
        pixels = [
            torch.from_numpy(model_input(f.pixels)) for f in (frames.with_marker, frames.without_marker)
        ]
        flags = (frames.had_marker, frames.rescales, frames.same_crop)
        return record.position, pixels[0], pixels[1], flags, None


def _collate(items: list[PairItem]) -> list[PairItem]:
    return items


@dataclass
class _Chunk:
    positions: np.ndarray
    flags: np.ndarray  # [n, 3] bool: had_marker, rescaled, same_crop
    logit_with_nh: np.ndarray
    logit_without_nh: np.ndarray
    zbar_with_nl: np.ndarray
    zbar_without_nl: np.ndarray
    errors: dict[int, str]


@torch.inference_mode()
def _forward(pixels_bchw: torch.Tensor, models: Models) -> tuple[np.ndarray, np.ndarray]:
    """Mean latents [B, d_sae] float32 and head logits [B, heads] float64, as ``stream.run_chunk`` makes them."""
    fmap = models.feature_model.backbone.forward_features(
        pixels_bchw.to(models.device, memory_format=torch.channels_last)
    )
    zbar, _, _, _, _ = encode_map(fmap, models, False, None)
    pooled = fmap.double().mean(dim=(2, 3))
    logits = pooled @ models.heads_w_hd.T + models.heads_b_h
    return zbar.cpu().numpy(), logits.cpu().numpy()


def _run_chunk(
    root: str,
    records: list[AnalysisRecord],
    models: Models,
    frame_size: tuple[int, int],
    config: AnalyzeConfig,
    on_image: Callable[[int], None] | None,
) -> _Chunk:
    loader = DataLoader(
        PairFrames(root, records, frame_size),
        batch_size=max(1, config.batch_size // 2),  # two frames per image: batch_size frames per pass
        num_workers=config.workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    positions, flags, zw, zwo, lw, lwo = [], [], [], [], [], []
    errors: dict[int, str] = {}
    for items in loader:
        ok = [item for item in items if item[4] is None]
        errors |= {item[0]: str(item[4]) for item in items if item[4] is not None}
        if ok:
            pixels = torch.stack([item[1] for item in ok] + [item[2] for item in ok])
            zbar, logits = _forward(pixels, models)
            k = len(ok)
            zw.append(zbar[:k])
            zwo.append(zbar[k:])
            lw.append(logits[:k])
            lwo.append(logits[k:])
            positions += [item[0] for item in ok]
            flags += [item[3] for item in ok]
        if on_image is not None:
            on_image(len(items))
    d_sae, heads = models.sae.d_sae, models.heads_b_h.shape[0]
    return _Chunk(
        positions=np.asarray(positions, np.int64),
        flags=np.asarray(flags, bool).reshape(-1, 3),
        logit_with_nh=np.concatenate(lw) if lw else np.zeros((0, heads)),
        logit_without_nh=np.concatenate(lwo) if lwo else np.zeros((0, heads)),
        zbar_with_nl=np.concatenate(zw) if zw else np.zeros((0, d_sae), np.float32),
        zbar_without_nl=np.concatenate(zwo) if zwo else np.zeros((0, d_sae), np.float32),
        errors=errors,
    )


def _save(chunk: _Chunk, records: list[AnalysisRecord], path: Path) -> None:
    arrays = {
        "positions": chunk.positions,
        "image_ids": np.array([r.image_id for r in records]),  # what the chunk covers (its identity)
        "covered": np.array([r.position for r in records], np.int64),
        "flags": chunk.flags,
        "logit_with": chunk.logit_with_nh,
        "logit_without": chunk.logit_without_nh,
        "zbar_with": chunk.zbar_with_nl,
        "zbar_without": chunk.zbar_without_nl,
        "errors": np.array(json.dumps({str(k): v for k, v in chunk.errors.items()})),
    }
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _load(path: Path, records: list[AnalysisRecord], d_sae: int, heads: int) -> _Chunk | None:
    """The chunk at ``path`` if it is readable and covers exactly ``records``; None otherwise."""
    try:
        with np.load(path, allow_pickle=False) as data:
            same = data["image_ids"].tolist() == [r.image_id for r in records] and data[
                "covered"
            ].tolist() == [r.position for r in records]
            chunk = _Chunk(
                positions=data["positions"],
                flags=data["flags"],
                logit_with_nh=data["logit_with"],
                logit_without_nh=data["logit_without"],
                zbar_with_nl=data["zbar_with"],
                zbar_without_nl=data["zbar_without"],
                errors={int(k): v for k, v in json.loads(str(data["errors"])).items()},
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    shapes_ok = (
        chunk.zbar_with_nl.shape == chunk.zbar_without_nl.shape == (len(chunk.positions), d_sae)
        and chunk.logit_with_nh.shape == chunk.logit_without_nh.shape == (len(chunk.positions), heads)
        and chunk.flags.shape == (len(chunk.positions), 3)
    )
    covered = set(chunk.positions.tolist()) | set(chunk.errors)
    return chunk if same and shapes_ok and covered == {r.position for r in records} else None


def chunk_file(work: Path, i: int) -> Path:
    return work / f"{KIND}-{i:05d}.npz"


def _stack(paths: list[Path], key: str, d_sae: int, out: Path, big: bool) -> np.ndarray:
    """The chunks' ``key`` arrays stacked: in memory, or (``big``) a memory map at ``out`` filled one chunk
    at a time, so a large run never holds them all in memory."""
    if not big:
        parts = []
        for path in paths:
            with np.load(path) as data:
                parts.append(data[key])
        return np.concatenate(parts) if parts else np.zeros((0, d_sae), np.float32)
    sizes = []
    for path in paths:
        with np.load(path) as data:
            sizes.append(len(data["positions"]))
    stacked = np.lib.format.open_memmap(out, "w+", np.float32, (sum(sizes), d_sae))
    start = 0
    for path, size in zip(paths, sizes, strict=True):
        with np.load(path) as data:
            stacked[start : start + size] = data[key]
        start += size
    stacked.flush()
    del stacked
    return np.load(out, mmap_mode="r")


def marker_counterfactuals(
    config: AnalyzeConfig,
    records: list[AnalysisRecord],
    models: Models,
    frame_size: tuple[int, int],
    work: Path,
    bar: Any = None,
) -> CounterfactualResult | None:
    """Every analysed image of a phantom dataset with and without its marker, through the models; None when
    ``config.data`` is not a (finished) phantom dataset or ``config.counterfactuals`` is "off".

    Chunks of ``config.chunk_images`` images are committed to ``work`` and reused on a rerun (a damaged one, or
    one covering other images, is recomputed). ``bar`` (a tqdm bar, optional) advances once per image."""
    root = str(config.data)
    if config.counterfactuals == "off":
        return None
    if not (is_phantom_dataset(root) and (Path(root) / MANIFEST).is_file()):
        return None
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    d_sae, heads = models.sae.d_sae, int(models.heads_b_h.shape[0])
    step = max(1, config.chunk_images)
    chunks: list[_Chunk] = []  # without their mean latents, read back from the files at the end
    paths: list[Path] = []
    for i, start in enumerate(range(0, len(records), step)):
        part = records[start : start + step]
        path = chunk_file(work, i)
        chunk = _load(path, part, d_sae, heads) if path.is_file() else None
        if chunk is None:
            path.unlink(missing_ok=True)
            on_image = bar.update if bar is not None else None
            chunk = _run_chunk(root, part, models, frame_size, config, on_image)
            _save(chunk, part, path)
        elif bar is not None:
            bar.update(len(part))
        empty = np.zeros((0, d_sae), np.float32)
        chunks.append(replace(chunk, zbar_with_nl=empty, zbar_without_nl=empty))
        paths.append(path)
    return _result(chunks, paths, records, models, work)


def _result(
    chunks: list[_Chunk], paths: list[Path], records: list[AnalysisRecord], models: Models, work: Path
) -> CounterfactualResult:
    heads, d_sae = int(models.heads_b_h.shape[0]), models.sae.d_sae
    by_position = {r.position: r for r in records}
    positions = np.concatenate([c.positions for c in chunks]) if chunks else np.zeros(0, np.int64)
    flags = np.concatenate([c.flags for c in chunks]) if chunks else np.zeros((0, 3), bool)
    table = pd.DataFrame(
        {
            "position": positions,
            "image_id": [by_position[int(p)].image_id for p in positions],
            "had_marker": flags[:, 0],
            "rescaled": flags[:, 1],
            "same_crop": flags[:, 2],
        }
    )
    logits = {
        key: np.concatenate([getattr(c, key) for c in chunks]) if chunks else np.zeros((0, heads))
        for key in ("logit_with_nh", "logit_without_nh")
    }
    big = 2 * len(positions) * d_sae * 4 > MEMMAP_BYTES
    zbar_with = _stack(paths, "zbar_with", d_sae, work / f"{KIND}-zbar-with.npy", big)
    zbar_without = _stack(paths, "zbar_without", d_sae, work / f"{KIND}-zbar-without.npy", big)
    errors = {by_position[p].image_id: e for c in chunks for p, e in c.errors.items()}
    return CounterfactualResult(
        table, logits["logit_with_nh"], logits["logit_without_nh"], zbar_with, zbar_without, errors
    )


# --------------------------------------------------------------------------------------------- tables


def counterfactual_tables(
    result: CounterfactualResult,
    head: HeadLinear,
    labels: pd.DataFrame,
    tasks: Sequence[str],
    flags: pd.Series | None = None,
) -> dict[str, pd.DataFrame]:
    """``images`` (the per-image table with ``shift_<task>`` columns: counterfactual.parquet), ``shift`` (per
    head and subset), ``aurocs`` (adversarial vs favourable pairing) and ``carriers`` (every latent that the
    marker moves, per head: counterfactual_latents.parquet). ``labels`` has ``image_id`` and a 0/1 column per
    task (the bundle's image table does); ``tasks`` are the heads to report (of ``head.tasks``, the order of
    the result's logit columns). ``flags`` (latent -> comma-separated flags, e.g. ``latents.parquet``'s
    ``flags``) joins the carriers as a ``flags`` column, so marker latents are marked where they rank."""
    tasks = tuple(tasks)
    table = result.frame(head.tasks)
    columns = [head.index(t) for t in tasks]
    with_nh, without_nh = result.logit_with_nh[:, columns], result.logit_without_nh[:, columns]
    for h, task in enumerate(tasks):
        table[f"shift_{task}"] = with_nh[:, h] - without_nh[:, h]
    y_nh = labels.set_index("image_id").loc[table["image_id"], list(tasks)].to_numpy().astype(np.int64)
    had = table["had_marker"].to_numpy(bool)
    rescaled = table["rescaled"].to_numpy(bool)
    subsets = {"marker in file": had, "no marker in file": ~had, "text only": ~rescaled, "rescaled": rescaled}
    shift = marker_shift(with_nh, without_nh, tasks, subsets)
    aurocs = adversarial_aurocs(with_nh, without_nh, y_nh, tasks, had)
    carriers, totals = [], []
    for h, task in enumerate(tasks):
        c = shift_carriers(
            result.zbar_with_nl, result.zbar_without_nl, head, task, with_nh[:, h] - without_nh[:, h]
        )
        totals.append({"head": task, "subset": "all"} | {k: v for k, v in c.attrs.items() if k != "task"})
        c = c.assign(head=task)[["head", *c.columns]]
        if flags is not None:
            c["flags"] = flags.reindex(c["latent"].to_numpy()).fillna("").astype(str).to_numpy()
        carriers.append(c)
    keys = ["head", "subset"]
    extra = pd.DataFrame(totals).drop(columns=["n_images", "logit_shift"], errors="ignore")
    shift = shift.merge(extra, on=keys, how="left")
    return {
        "images": table,
        "shift": shift,
        "aurocs": aurocs,
        "carriers": pd.concat(carriers, ignore_index=True) if carriers else pd.DataFrame(),
    }


def counterfactual_summary(tables: Mapping[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per head, the headline numbers for the manifest summary (JSON-ready)."""
    shift = tables["shift"][tables["shift"]["subset"] == "all"].set_index("head")
    aurocs = tables["aurocs"].set_index("head")
    out = []
    for task in shift.index:
        s, a = shift.loc[task], aurocs.loc[task]
        out.append(
            {
                "head": task,
                "images": int(s["n"]),
                "mean_shift": float(s["mean"]),
                "sem": float(s["sem"]),
                "median_shift": float(s["median"]),
                "auroc_as_is": float(a.get("auroc_as_is", np.nan)),
                "auroc_adversarial": float(a["auroc_adversarial"]),
                "auroc_favourable": float(a["auroc_favourable"]),
                "latents_changed": int(s["latents_changed"]),
                "remainder": float(s.get("remainder", np.nan)),
            }
        )
    return out


def _signed(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.{digits}f}"


def _plain(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def _carrier_rows(rows: pd.DataFrame) -> list[str]:
    lines = [
        "| rank | latent | flags | fires with the marker | activation change | effect | contribution change "
        "| share of the gross change |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows.to_dict(orient="records"):
        fires = "more" if r["activation_change"] > 0 else "less"
        where = f"{fires} (in {r['images_more'] if fires == 'more' else r['images_less']} images)"
        lines.append(
            f"| {r['rank']} | #{r['latent']} | {r.get('flags') or ''} | {where} | "
            f"{_signed(r['activation_change'], 4)} | {_signed(r['effect'])} | {_signed(r['contribution_change'])} | "
            f"{100 * r['gross_share']:.1f}% |"
        )
    return lines


def counterfactual_section(tables: Mapping[str, pd.DataFrame], n_carriers: int = 10) -> str:
    """The report's "Marker counterfactual" section (markdown)."""
    images, shift, aurocs = tables["images"], tables["shift"], tables["aurocs"].set_index("head")
    carriers = tables["carriers"]
    n, marked = len(images), int(images["had_marker"].sum())
    rescaled, moved = int(images["rescaled"].sum()), int((~images["same_crop"]).sum())
    lines = [
        "## Marker counterfactual",
        "",
        f"Each of the {n} analysed images was rendered again by the phantom generator with and without its "
        f"burned-in marker ({marked} files carry one), pixels identical outside the marker's box, and both "
        "versions went through the models. Shift = logit with the marker - logit without. In "
        f"{rescaled} images the marker is brighter than any other pixel, so the preprocessing's min-max "
        f"scaling dims the whole frame too; in {moved} the breast crop moves.",
        "",
        "| head | mean shift (± s.e.) | median | 5-95% of images | raised in | AUROC as is | positives "
        "unmarked vs negatives marked | the reverse |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    overall = shift[shift["subset"] == "all"].set_index("head")
    for task, s in overall.iterrows():
        a = aurocs.loc[task]
        lines.append(
            f"| {task} | {_signed(s['mean'])} ± {_plain(s['sem'])} | {_signed(s['median'])} | "
            f"{_signed(s['q05'])} to {_signed(s['q95'])} | {100 * s['share_raised']:.0f}% | "
            f"{_plain(a.get('auroc_as_is', np.nan))} | {_plain(a['auroc_adversarial'])} | "
            f"{_plain(a['auroc_favourable'])} |"
        )
    lines += [
        "",
        "Mean shift by subset: " + "; ".join(_subset_text(shift, t) for t in overall.index) + ".",
        "",
    ]
    for task, s in overall.iterrows():
        rows = carriers[carriers["head"] == task]
        up, down = rows[rows["contribution_change"] > 0], rows[rows["contribution_change"] < 0]
        lines += [
            f"### {task}: the latents that carry the shift",
            "",
            f"The marker changes the mean activation of {int(s['latents_changed'])} latents (a change of pixels "
            "moves every token's features a little; every one is in "
            f"`{CARRIERS_FILE}`, head = {task}). Those that raise the logit add {_signed(s['raising'])}, those "
            f"that lower it {_signed(s['lowering'])}; the SAE's part of the shift is {_signed(s['sae_shift'])}, "
            f"the change of its error term {_signed(s.get('remainder', np.nan))}. "
            f"{int(s['carriers_for_share'])} latents carry {CARRIER_SHARE:.0%} of the gross change.",
            "",
            f"Raising the logit: the {min(n_carriers, len(up))} largest of {len(up)}.",
            "",
            *_carrier_rows(up.head(n_carriers)),
            "",
            f"Lowering the logit: the {min(n_carriers, len(down))} largest of {len(down)}.",
            "",
            *_carrier_rows(down.head(n_carriers)),
            "",
        ]
    return "\n".join(lines)


def _subset_text(shift: pd.DataFrame, task: str) -> str:
    rows = shift[(shift["head"] == task) & (shift["subset"] != "all")]
    parts = [f"{r.subset} {_signed(r.mean)} (n={r.n})" for r in rows.itertuples(index=False) if r.n]
    return f"{task}: " + ", ".join(parts)
