"""The work folder of an unfinished analysis (``out/work``): its identity, and the chunks committed to it.

Each chunk is one ``.npz`` written atomically, so an interrupted run resumes at the first missing chunk; a
damaged chunk is recomputed. The folder carries the run's identity, so a rerun with other inputs or
settings never mixes its chunks with these.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.frames import AnalysisRecord
from mammo_sae.analysis.stream import ChunkResult, Models, run_chunk
from mammo_sae.bundle.format import MANIFEST, WORK_DIR, BundleError, read_manifest
from mammo_sae.bundle.writing.config import AnalyzeConfig, AnalyzeError
from mammo_sae.core.atomic import atomic_open, atomic_write_text

IDENTITY_FILE = "identity.json"


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


def save_chunk(chunk: ChunkResult, path: Path) -> None:
    arrays = {
        "positions": chunk.positions,
        "errors": np.array(json.dumps({str(k): v for k, v in chunk.errors.items()})),
        "zbar": chunk.zbar_nl,
        "zmax": chunk.zmax_nl,
        "logit_original": chunk.logit_original_nh,
        "error_term": chunk.error_term_nh,
        "transforms": np.array(chunk.transforms, dtype=object).astype(str),
        "recon": chunk.recon,
        "nnz": np.array(chunk.codes.nnz if chunk.codes is not None else 0),
        "fired": chunk.fired_l if chunk.fired_l is not None else np.zeros(0, np.int64),
    }
    if chunk.evidence_nht is not None:
        arrays |= {"evidence": chunk.evidence_nht, "tissue": chunk.tissue_n3t}
    if chunk.codes is not None:
        arrays |= {
            "grid": np.array(chunk.codes.grid),
            "indptr": chunk.codes.indptr,
            "latent": chunk.codes.latent,
            "value": chunk.codes.value,
        }
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_chunk(path: Path, d_sae: int, *, heavy: bool = True) -> ChunkResult:
    """Read a chunk; ``heavy=False`` skips the mean latents and codes (zbar then has 0 columns)."""
    with np.load(path, allow_pickle=False) as data:
        codes = None
        if heavy and "indptr" in data:
            codes = TokenCodes(
                grid=tuple(int(v) for v in data["grid"]),
                d_sae=d_sae,
                indptr=data["indptr"],
                latent=data["latent"],
                value=data["value"],
            )
        positions = data["positions"]
        return ChunkResult(
            positions=positions,
            errors={int(k): v for k, v in json.loads(str(data["errors"])).items()},
            zbar_nl=data["zbar"] if heavy else np.zeros((len(positions), 0), np.float32),
            zmax_nl=data["zmax"] if heavy else np.zeros((len(positions), 0), np.float32),
            logit_original_nh=data["logit_original"],
            error_term_nh=data["error_term"],
            codes=codes,
            transforms=[str(t) for t in data["transforms"]],
            recon=data["recon"],
            nnz=int(data["nnz"]),
            fired_l=data["fired"],
            grid=tuple(int(v) for v in data["grid"]) if "grid" in data else None,
            evidence_nht=data.get("evidence"),
            tissue_n3t=data.get("tissue"),
        )


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
                load_chunk(path, models.sae.d_sae)
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
        save_chunk(result, path)
    return paths
