"""Compact sparse SAE codes of every token of a dataset split: CSR over tokens, fp16 values.

An SAE code is mostly zeros, so a split's codes are kept as (token -> latent ids, values) in CSR form:
``indptr[r] .. indptr[r + 1]`` are the entries of token row ``r``, sorted by latent id. Image ``i`` owns
rows ``i * T .. (i + 1) * T - 1`` with ``T = gh * gw`` and token ``t = row * gw + col``. On disk the three
arrays are plain ``.npy`` files (memory-mappable) next to ``codes.json``, which is written last.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammo_sae.core.atomic import atomic_open, atomic_write_text
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.page_release import release_pages

FORMAT_VERSION = 1
META_FILE = "codes.json"
ARRAY_FILES = {"indptr": "codes_indptr.npy", "latent": "codes_latent.npy", "value": "codes_value.npy"}
UINT16_MAX_D_SAE = 1 << 16  # latent ids 0 .. 65535 fit uint16
LATENT_DTYPES = (np.dtype(np.uint16), np.dtype(np.int32))
LOAD_SAMPLE = 100_000  # entries checked for latent range / positive value when loading
WRITE_CHUNK = 1 << 24  # entries converted and written at a time
MEAN_CHUNK_CELLS = 1 << 24  # image x latent cells accumulated at a time in mean_latents
REBUILD_HINT = "re-run `python -m mammo_sae.analyze` to rebuild the codes"


class CodesError(MammoSaeError):
    """Sparse codes are malformed, do not fit together, or a codes folder is missing or damaged."""


@dataclass(frozen=True, eq=False)
class TokenCodes:
    """Sparse codes of every token of n_images images: CSR over tokens (image i's tokens are rows
    i*T .. (i+1)*T-1, T = gh*gw).

    ``latent`` is int32 when built in memory; after ``load`` it keeps the on-disk dtype (uint16 when
    d_sae <= 65536) so memory-mapped files are never copied — cast to int64 before arithmetic.
    """

    grid: tuple[int, int]  # (gh, gw)
    d_sae: int
    indptr: np.ndarray  # [n_images * T + 1] int64
    latent: np.ndarray  # [nnz] int32 or uint16
    value: np.ndarray  # [nnz] float16, all > 0

    def __post_init__(self) -> None:
        gh, gw = (int(v) for v in self.grid)
        object.__setattr__(self, "grid", (gh, gw))
        object.__setattr__(self, "d_sae", int(self.d_sae))
        if gh <= 0 or gw <= 0 or self.d_sae <= 0:
            raise CodesError(f"grid {self.grid} and d_sae {self.d_sae} must be positive")
        n_rows = len(self.indptr) - 1
        if self.indptr.ndim != 1 or self.indptr.dtype != np.int64 or n_rows < 0 or n_rows % (gh * gw):
            raise CodesError(
                f"indptr must be 1-D int64 of n_images * {gh * gw} + 1 entries, "
                f"got {self.indptr.dtype} {self.indptr.shape}"
            )
        if self.latent.ndim != 1 or self.value.ndim != 1 or len(self.latent) != len(self.value):
            raise CodesError(
                f"latent {self.latent.shape} and value {self.value.shape} must be 1-D, same length"
            )
        if self.latent.dtype not in LATENT_DTYPES or self.value.dtype != np.float16:
            raise CodesError(
                f"latent must be int32/uint16 and value float16, got {self.latent.dtype}, {self.value.dtype}"
            )
        if self.indptr[0] != 0 or self.indptr[-1] != len(self.value):
            raise CodesError(
                f"indptr must run from 0 to nnz={len(self.value)}, got {self.indptr[0]}..{self.indptr[-1]}"
            )

    # --- shape -------------------------------------------------------------------------------------------

    @property
    def tokens_per_image(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def n_images(self) -> int:
        return (len(self.indptr) - 1) // self.tokens_per_image

    @property
    def nnz(self) -> int:
        return len(self.value)

    def __repr__(self) -> str:
        return f"TokenCodes(n_images={self.n_images}, grid={self.grid}, d_sae={self.d_sae}, nnz={self.nnz})"

    # --- building ----------------------------------------------------------------------------------------

    @classmethod
    def from_dense(
        cls, z_tl: np.ndarray | torch.Tensor, grid: tuple[int, int], top_n: int | None = None
    ) -> TokenCodes:
        """z of n_images*T tokens [n*T, d_sae] -> CSR; values cast to fp16 and entries that become 0 dropped.

        ``top_n`` keeps each token's top_n largest entries (ranked on the input values, ties -> lower latent
        id). Works on the whole block at once (on z's device), so a batch of images costs a few passes.
        """
        z_tl = z_tl.detach() if isinstance(z_tl, torch.Tensor) else torch.as_tensor(np.asarray(z_tl))
        t = int(grid[0]) * int(grid[1])
        if z_tl.ndim != 2 or not z_tl.is_floating_point() or (t and len(z_tl) % t):
            raise CodesError(
                f"from_dense expects float codes [n_images * {t}, d_sae] for grid {tuple(grid)}, "
                f"got {z_tl.dtype} {tuple(z_tl.shape)}"
            )
        _check_non_negative(z_tl)
        if top_n is not None and top_n < z_tl.shape[1]:
            rows_k, latent_k = _top_n_entries(z_tl, top_n)
        else:
            rows_k, latent_k = _positive_entries(z_tl)
        value_k = z_tl[rows_k, latent_k].to(torch.float16)
        if torch.isinf(value_k).any():
            raise CodesError("codes above the float16 range (65504) can not be stored; check the SAE output")
        alive_k = value_k > 0  # zeros a top_n selection picked up and values that underflow float16
        if not bool(alive_k.all()):
            rows_k, latent_k, value_k = rows_k[alive_k], latent_k[alive_k], value_k[alive_k]
        counts_r = torch.bincount(rows_k, minlength=len(z_tl))
        indptr = np.zeros(len(z_tl) + 1, dtype=np.int64)
        np.cumsum(counts_r.cpu().numpy(), out=indptr[1:])
        return cls(
            grid=(int(grid[0]), int(grid[1])),
            d_sae=int(z_tl.shape[1]),
            indptr=indptr,
            latent=latent_k.to(torch.int32).cpu().numpy(),
            value=value_k.cpu().numpy(),
        )

    @staticmethod
    def concat(parts: Sequence[TokenCodes]) -> TokenCodes:
        """Codes of all parts' images, in order (same grid and d_sae required)."""
        if not parts:
            raise CodesError("concat needs at least one TokenCodes part")
        first = parts[0]
        for part in parts[1:]:
            if part.grid != first.grid or part.d_sae != first.d_sae:
                raise CodesError(
                    f"can not concat codes of grid {part.grid}, d_sae {part.d_sae} "
                    f"with grid {first.grid}, d_sae {first.d_sae}"
                )
        offsets = np.cumsum([0] + [p.nnz for p in parts])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + off for p, off in zip(parts, offsets, strict=False)])
        return TokenCodes(
            grid=first.grid,
            d_sae=first.d_sae,
            indptr=indptr.astype(np.int64, copy=False),
            latent=np.concatenate([p.latent for p in parts]),
            value=np.concatenate([p.value for p in parts]),
        )

    # --- slicing -----------------------------------------------------------------------------------------

    def images(self, start: int, stop: int) -> TokenCodes:
        """Codes of images start .. stop-1; latent and value are views, indptr a rebased copy."""
        if not 0 <= start <= stop <= self.n_images:
            raise CodesError(f"image range {start}:{stop} is outside 0:{self.n_images}")
        t = self.tokens_per_image
        indptr = self.indptr[start * t : stop * t + 1]
        lo, hi = int(indptr[0]), int(indptr[-1])
        return TokenCodes(self.grid, self.d_sae, indptr - lo, self.latent[lo:hi], self.value[lo:hi])

    def image(self, i: int) -> TokenCodes:
        """One image's codes (views of latent and value)."""
        self._check_image(i)
        return self.images(i, i + 1)

    def entry_rows(self) -> np.ndarray:
        """[nnz] int64 token row (0 .. n_images*T-1) of every entry."""
        return np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))

    def release(self) -> None:
        """Give back the resident pages of memory-mapped codes after a pass (no-op for in-memory codes)."""
        release_pages(self.indptr, self.latent, self.value)

    def _check_image(self, i: int) -> None:
        if not 0 <= i < self.n_images:
            raise CodesError(f"image {i} is outside 0..{self.n_images - 1}")

    # --- dense views -------------------------------------------------------------------------------------

    def dense(self) -> np.ndarray:
        """[n*T, d_sae] float32 codes (for tests and small data)."""
        z_tl = np.zeros((len(self.indptr) - 1, self.d_sae), dtype=np.float32)
        z_tl[self.entry_rows(), self.latent.astype(np.int64)] = self.value
        return z_tl

    def image_latent_maps(self, i: int, latents: Sequence[int]) -> np.ndarray:
        """[len(latents), gh, gw] float32 maps of the given latents on image i (zeros where they did not fire)."""
        self._check_image(i)
        latents_k = np.asarray(latents, dtype=np.int64).reshape(-1)
        if len(latents_k) and (latents_k.min() < 0 or latents_k.max() >= self.d_sae):
            raise CodesError(f"latent ids must lie in 0..{self.d_sae - 1}, got {latents_k.tolist()}")
        unique_u, inverse_k = np.unique(latents_k, return_inverse=True)
        one = self.image(i)
        latent_e = one.latent.astype(np.int64)
        slot_e = np.minimum(np.searchsorted(unique_u, latent_e), max(len(unique_u) - 1, 0))
        hit_e = (unique_u[slot_e] == latent_e) if len(unique_u) else np.zeros(len(latent_e), dtype=bool)
        maps_ut = np.zeros((len(unique_u), self.tokens_per_image), dtype=np.float32)
        maps_ut[slot_e[hit_e], one.entry_rows()[hit_e]] = one.value[hit_e]
        return maps_ut[inverse_k].reshape(len(latents_k), *self.grid)

    def latent_map(self, i: int, latent: int) -> np.ndarray:
        """[gh, gw] float32 map of one latent on image i (zeros where it did not fire)."""
        return self.image_latent_maps(i, [latent])[0]

    def mean_latents(self) -> np.ndarray:
        """[n_images, d_sae] float32 mean over each image's tokens, from the fp16 codes (approximate; exact
        fp32 means are kept by the runner). Accumulated in float64 over bounded image chunks."""
        zbar_nl = np.zeros((self.n_images, self.d_sae), dtype=np.float32)
        step = max(1, MEAN_CHUNK_CELLS // self.d_sae)
        for start in range(0, self.n_images, step):
            part = self.images(start, min(start + step, self.n_images))
            key_e = (part.entry_rows() // self.tokens_per_image) * self.d_sae + part.latent.astype(np.int64)
            sums = np.bincount(
                key_e, weights=part.value.astype(np.float64), minlength=part.n_images * self.d_sae
            )
            zbar_nl[start : start + part.n_images] = (sums / self.tokens_per_image).reshape(part.n_images, -1)
        return zbar_nl

    # --- files -------------------------------------------------------------------------------------------

    def latent_disk_dtype(self) -> np.dtype:
        """uint16 when every latent id fits, int32 otherwise."""
        return np.dtype(np.uint16 if self.d_sae <= UINT16_MAX_D_SAE else np.int32)

    def save(self, folder: Path) -> None:
        """Write the three arrays, then codes.json (its presence marks a complete folder); each atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        latent_dtype = self.latent_disk_dtype()
        _write_npy(folder / ARRAY_FILES["indptr"], self.indptr, np.dtype(np.int64))
        _write_npy(folder / ARRAY_FILES["latent"], self.latent, latent_dtype)
        _write_npy(folder / ARRAY_FILES["value"], self.value, np.dtype(np.float16))
        meta = {
            "format_version": FORMAT_VERSION,
            "grid": list(self.grid),
            "d_sae": self.d_sae,
            "n_images": self.n_images,
            "nnz": self.nnz,
            "latent_dtype": latent_dtype.name,
        }
        atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> TokenCodes:
        """Read a folder written by ``save`` (memory-mapped by default) and check that it is consistent."""
        folder = Path(folder)
        meta = _read_meta(folder / META_FILE)
        grid = (int(meta["grid"][0]), int(meta["grid"][1]))
        n_rows = meta["n_images"] * grid[0] * grid[1]
        expect = {
            "indptr": (np.dtype(np.int64), n_rows + 1),
            "latent": (np.dtype(meta["latent_dtype"]), meta["nnz"]),
            "value": (np.dtype(np.float16), meta["nnz"]),
        }
        arrays = {name: _read_npy(folder / ARRAY_FILES[name], *expect[name], mmap) for name in ARRAY_FILES}
        _check_indptr(folder / ARRAY_FILES["indptr"], arrays["indptr"], meta["nnz"])
        _check_entries(folder, arrays["latent"], arrays["value"], meta["d_sae"])
        codes = cls(grid=grid, d_sae=meta["d_sae"], **arrays)
        codes.release()  # the checks touched every page; they need not stay resident
        return codes


def save_concatenation(
    folder: Path, parts: Iterable[TokenCodes], *, grid: tuple[int, int], d_sae: int, n_images: int, nnz: int
) -> None:
    """Write the concatenation of ``parts`` (iterated once, never held together) in the layout of
    :meth:`TokenCodes.save`; the totals must be known up front (they go into the .npy headers)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shell = TokenCodes(grid, d_sae, np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float16))
    latent_dtype = shell.latent_disk_dtype()
    n_rows = n_images * grid[0] * grid[1]
    specs = {
        "indptr": (np.dtype(np.int64), n_rows + 1),
        "latent": (latent_dtype, nnz),
        "value": (np.dtype(np.float16), nnz),
    }
    written = {"indptr": 1, "latent": 0, "value": 0}
    offset = 0
    with contextlib.ExitStack() as stack:
        handles = {}
        for name, (dtype, length) in specs.items():
            handles[name] = stack.enter_context(atomic_open(folder / ARRAY_FILES[name], "wb"))
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (length,),
            }
            np.lib.format.write_array_header_1_0(handles[name], header)
        handles["indptr"].write(np.zeros(1, np.int64).tobytes())
        for part in parts:
            if part.grid != tuple(grid) or part.d_sae != d_sae:
                raise CodesError(
                    f"a part has grid {part.grid} / d_sae {part.d_sae}, expected {grid} / {d_sae}"
                )
            handles["indptr"].write((np.asarray(part.indptr[1:], np.int64) + offset).tobytes())
            handles["latent"].write(np.asarray(part.latent).astype(latent_dtype).tobytes())
            handles["value"].write(np.asarray(part.value, np.float16).tobytes())
            written["indptr"] += len(part.indptr) - 1
            written["latent"] += part.nnz
            written["value"] += part.nnz
            offset += part.nnz
        for name, (_, length) in specs.items():
            if written[name] != length:
                raise CodesError(f"{name}: {written[name]} entries written, {length} announced")
    meta = {
        "format_version": FORMAT_VERSION,
        "grid": list(grid),
        "d_sae": d_sae,
        "n_images": n_images,
        "nnz": nnz,
        "latent_dtype": latent_dtype.name,
    }
    atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2) + "\n")


# --- from_dense helpers ------------------------------------------------------------------------------------


def _check_non_negative(z_tl: torch.Tensor) -> None:
    """SAE codes are >= 0 (ReLU / TopK); a negative or NaN entry means the caller passed something else."""
    if z_tl.numel() == 0:
        return
    lowest = float(z_tl.amin())  # NaN propagates
    if not lowest >= 0:
        raise CodesError(
            f"SAE codes must be finite and >= 0, found minimum {lowest}; pass the encoder's output z"
        )


def _positive_entries(z_tl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, latent) int64 of every entry > 0, row-major; numpy's flatnonzero is the faster scan on CPU."""
    if z_tl.device.type == "cpu" and z_tl.dtype in (torch.float16, torch.float32, torch.float64):
        flat_k = torch.from_numpy(np.flatnonzero(z_tl.numpy() > 0))
        return flat_k // z_tl.shape[1], flat_k % z_tl.shape[1]
    return torch.nonzero(z_tl > 0).unbind(1)


def _top_n_entries(z_tl: torch.Tensor, top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, latent) int64 of each token's top_n largest entries (zeros included when a token has fewer
    positives), row-major. One topk of top_n + 1 shows which rows have a tie across the cut-off; only those
    rows pay for the exact tie rule (lower latent ids first)."""
    if top_n < 1:
        raise CodesError(f"top_n must be >= 1 or None, got {top_n}")
    value_tk, latent_tk = torch.topk(z_tl, top_n + 1, dim=1, sorted=True)
    cut_t = value_tk[:, top_n - 1]
    latent_tk = latent_tk[:, :top_n].contiguous()
    tied_r = torch.nonzero((value_tk[:, top_n] == cut_t) & (cut_t > 0)).squeeze(1)
    if len(tied_r):
        latent_tk[tied_r] = _tie_broken_top_n(z_tl[tied_r], cut_t[tied_r], top_n)
    rows_k = torch.arange(len(z_tl), device=z_tl.device).repeat_interleave(top_n)
    return rows_k, latent_tk.sort(dim=1).values.reshape(-1)


def _tie_broken_top_n(z_rl: torch.Tensor, cut_r: torch.Tensor, top_n: int) -> torch.Tensor:
    """[rows, top_n] latent ids (ascending): entries above the cut-off, then the lowest-id entries at it."""
    above_rl = z_rl > cut_r[:, None]
    at_rl = z_rl == cut_r[:, None]
    need_r1 = top_n - above_rl.sum(dim=1, keepdim=True)
    keep_rl = above_rl | (at_rl & (at_rl.cumsum(dim=1) <= need_r1))
    latent_k = torch.nonzero(keep_rl)[:, 1]
    assert len(latent_k) == len(z_rl) * top_n, "each tied row keeps exactly top_n entries"
    return latent_k.reshape(len(z_rl), top_n)


# --- file helpers ------------------------------------------------------------------------------------------


def _damaged(path: Path, what: str) -> CodesError:
    return CodesError(f"{path}: {what}; the codes folder is damaged or incomplete — {REBUILD_HINT}")


def _write_npy(path: Path, array: np.ndarray, dtype: np.dtype) -> None:
    """Write a 1-D .npy in bounded chunks (a memory-mapped source is never read whole), atomically."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (len(array),)}
    with atomic_open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, len(array), WRITE_CHUNK):
            handle.write(np.ascontiguousarray(array[start : start + WRITE_CHUNK], dtype=dtype).tobytes())


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CodesError(
            f"{path} is missing (codes were never written or not finished) — {REBUILD_HINT}"
        ) from None
    except (OSError, ValueError) as exc:
        raise _damaged(path, f"unreadable ({exc})") from None
    keys = ("format_version", "grid", "d_sae", "n_images", "nnz", "latent_dtype")
    if not isinstance(meta, dict) or any(k not in meta for k in keys):
        raise _damaged(path, f"must hold the keys {list(keys)}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CodesError(
            f"{path}: format_version {meta['format_version']} is not {FORMAT_VERSION} — {REBUILD_HINT}"
        )
    if meta["latent_dtype"] not in [d.name for d in LATENT_DTYPES] or len(meta["grid"]) != 2:
        raise _damaged(path, f"bad latent_dtype {meta['latent_dtype']!r} or grid {meta['grid']}")
    return meta


def _read_npy(path: Path, dtype: np.dtype, length: int, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise _damaged(path, "missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise _damaged(path, f"unreadable or truncated ({exc})") from None
    if array.dtype != dtype or array.shape != (length,):
        raise _damaged(
            path,
            f"holds {array.dtype} {array.shape}, {META_FILE} says {dtype} ({length},) — they do not match",
        )
    return array


def _check_indptr(path: Path, indptr: np.ndarray, nnz: int) -> None:
    """indptr starts at 0, ends at nnz and never decreases (checked in bounded chunks)."""
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise _damaged(path, f"indptr runs {indptr[0]}..{indptr[-1]}, expected 0..{nnz}")
    for start in range(0, len(indptr) - 1, WRITE_CHUNK):
        if (np.diff(indptr[start : start + WRITE_CHUNK + 1]) < 0).any():
            raise _damaged(path, "indptr is not monotone")


def _check_entries(folder: Path, latent: np.ndarray, value: np.ndarray, d_sae: int) -> None:
    """Latent ids in range and values > 0, on an evenly spaced sample (full scans would defeat mmap)."""
    pick = np.unique(np.linspace(0, len(latent) - 1, min(len(latent), LOAD_SAMPLE)).astype(np.int64))
    latent_s = latent[pick].astype(np.int64)
    if len(pick) and (latent_s.min() < 0 or latent_s.max() >= d_sae):
        raise _damaged(folder / ARRAY_FILES["latent"], f"latent ids outside 0..{d_sae - 1}")
    if len(pick) and not (value[pick] > 0).all():
        raise _damaged(folder / ARRAY_FILES["value"], "values must all be > 0")
