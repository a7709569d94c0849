"""Top activating patches per latent, collected while streaming a split's codes, and their pixel boxes.

A latent's gallery should show n different images, so each image contributes at most one patch per latent:
its maximal token (ties -> lowest token index). The kept set is bounded by d_sae x n entries; each update
only re-ranks the latents that received a candidate able to enter their top n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import CodesError, TokenCodes

MAX_CELLS = 1 << 24  # image x latent cells of the dense per-image maxima built at a time
NO_TOKEN = np.iinfo(np.int32).max


def _image_maxima(codes: TokenCodes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image, latent, fp16 value bits, token) of each image's maximal token per latent that fired, ties ->
    lowest token.

    Works on dense [n_images, d_sae] cells: fp16 bit patterns of positive values order like the values, so
    one ``maximum.at`` finds each cell's maximum and one ``minimum.at`` the first token reaching it."""
    d, t = codes.d_sae, codes.tokens_per_image
    rows_e = codes.entry_rows()
    cell_e = (rows_e // t) * d + codes.latent.astype(np.int64)
    bits_e = codes.value.view(np.uint16)
    best_c = np.zeros(codes.n_images * d, dtype=np.uint16)
    np.maximum.at(best_c, cell_e, bits_e)
    at_best_e = bits_e == best_c[cell_e]
    token_c = np.full(codes.n_images * d, NO_TOKEN, dtype=np.int32)
    np.minimum.at(token_c, cell_e[at_best_e], (rows_e[at_best_e] % t).astype(np.int32))
    cell_k = np.flatnonzero(best_c)
    return cell_k // d, (cell_k % d).astype(np.int32), best_c[cell_k], token_c[cell_k]


def _gallery_order(latent_k: np.ndarray, bits_k: np.ndarray, image_k: np.ndarray, d_sae: int) -> np.ndarray:
    """Permutation sorting entries by latent asc, value desc, image asc: one int64 key when the three fit in
    63 bits (a plain argsort, several times faster than lexsort), lexsort otherwise."""
    down_k = np.uint16(0xFFFF) - bits_k  # larger value -> smaller key
    image_bits = int(image_k.max()).bit_length() if len(image_k) else 0
    if (d_sae - 1).bit_length() + 16 + image_bits <= 63:
        key_k = (
            (latent_k.astype(np.int64) << (16 + image_bits))
            | (down_k.astype(np.int64) << image_bits)
            | image_k
        )
        return np.argsort(key_k)
    return np.lexsort((image_k, down_k, latent_k))


def _group_rank(sorted_keys: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal keys (keys already grouped)."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


class TopPatches:
    """Streaming top-N activating patches per latent, bounded memory (d_sae x n entries). One patch per image
    per latent: an image contributes its maximal token for that latent (ties -> lowest token index), so a
    latent's gallery shows n different images. Order: value desc, then image asc. Feed each image once.

    Values are kept as their fp16 bit patterns (exact: the codes are fp16, and positive fp16 bits sort like
    the values)."""

    def __init__(self, d_sae: int, n: int = 32) -> None:
        if d_sae < 1 or n < 1:
            raise CodesError(f"TopPatches needs d_sae >= 1 and n >= 1, got {d_sae}, {n}")
        self.d_sae = int(d_sae)
        self.n = int(n)
        self.grid: tuple[int, int] | None = None
        self.latent_k = np.zeros(0, dtype=np.int32)
        self.image_k = np.zeros(0, dtype=np.int64)
        self.bits_k = np.zeros(0, dtype=np.uint16)
        self.token_k = np.zeros(0, dtype=np.int32)
        # per latent: the current n-th entry, the bar a newcomer must beat; bits -1 while fewer than n
        self.bar_bits_l = np.full(self.d_sae, -1, dtype=np.int32)
        self.bar_image_l = np.full(self.d_sae, np.iinfo(np.int64).max, dtype=np.int64)

    def update(self, codes: TokenCodes, image_offset: int) -> None:
        """Add the codes of images image_offset .. image_offset + codes.n_images - 1."""
        if codes.d_sae != self.d_sae or image_offset < 0:
            raise CodesError(
                f"TopPatches for d_sae {self.d_sae} got codes of d_sae {codes.d_sae} at image {image_offset}"
            )
        if self.grid is not None and codes.grid != self.grid:
            raise CodesError(f"codes have grid {codes.grid}, earlier updates had {self.grid}")
        self.grid = codes.grid
        step = max(1, MAX_CELLS // self.d_sae)
        for start in range(0, codes.n_images, step):
            image_k, latent_k, bits_k, token_k = _image_maxima(
                codes.images(start, min(start + step, codes.n_images))
            )
            self._merge(image_k + (image_offset + start), latent_k, bits_k, token_k)

    def _merge(
        self, image_k: np.ndarray, latent_k: np.ndarray, bits_k: np.ndarray, token_k: np.ndarray
    ) -> None:
        """Re-rank only the latents where some candidate beats the current n-th entry."""
        bar_bits, bar_image = self.bar_bits_l[latent_k], self.bar_image_l[latent_k]
        enters = (bits_k > bar_bits) | ((bits_k == bar_bits) & (image_k < bar_image))
        if not enters.any():
            return
        touched_l = np.zeros(self.d_sae, dtype=bool)
        touched_l[latent_k[enters]] = True
        stay = ~touched_l[self.latent_k]
        latent = np.concatenate([self.latent_k[~stay], latent_k[enters]])
        image = np.concatenate([self.image_k[~stay], image_k[enters]])
        bits = np.concatenate([self.bits_k[~stay], bits_k[enters]])
        token = np.concatenate([self.token_k[~stay], token_k[enters]])
        order = _gallery_order(latent, bits, image, self.d_sae)
        rank = _group_rank(latent[order])
        top = order[rank < self.n]
        last = order[rank == self.n - 1]  # the n-th entry of each touched latent that is full
        self.bar_bits_l[latent[last]] = bits[last]
        self.bar_image_l[latent[last]] = image[last]
        self.latent_k = np.concatenate([self.latent_k[stay], latent[top]])
        self.image_k = np.concatenate([self.image_k[stay], image[top]])
        self.bits_k = np.concatenate([self.bits_k[stay], bits[top]])
        self.token_k = np.concatenate([self.token_k[stay], token[top]])
        assert len(self.latent_k) <= self.d_sae * self.n

    def result(self) -> pd.DataFrame:
        """Columns latent (int32), rank (int16, 0-based), image (int64 global position), token, row, col
        (int32), value (float32); sorted by latent, rank."""
        order = _gallery_order(self.latent_k, self.bits_k, self.image_k, self.d_sae)
        latent = self.latent_k[order]
        token = self.token_k[order]
        gw = self.grid[1] if self.grid is not None else 1
        return pd.DataFrame(
            {
                "latent": latent.astype(np.int32),
                "rank": _group_rank(latent).astype(np.int16),
                "image": self.image_k[order].astype(np.int64),
                "token": token.astype(np.int32),
                "row": (token // gw).astype(np.int32),
                "col": (token % gw).astype(np.int32),
                "value": self.bits_k[order].view(np.float16).astype(np.float32),
            }
        )


def patch_boxes(
    rows: np.ndarray, cols: np.ndarray, grid: tuple[int, int], frame_size: tuple[int, int]
) -> np.ndarray:
    """[n, 4] float64 xyxy frame-pixel boxes of token cells: x0 = col * W / gw, x1 = (col + 1) * W / gw, same
    for y with H / gh. ``frame_size`` is (H, W), in the same order as ``grid`` (gh, gw)."""
    gh, gw = grid
    h, w = frame_size
    rows_n = np.asarray(rows, dtype=np.float64).reshape(-1)
    cols_n = np.asarray(cols, dtype=np.float64).reshape(-1)
    if len(rows_n) != len(cols_n):
        raise CodesError(f"rows ({len(rows_n)}) and cols ({len(cols_n)}) must have the same length")
    return np.stack([cols_n * w / gw, rows_n * h / gh, (cols_n + 1) * w / gw, (rows_n + 1) * h / gh], axis=1)
