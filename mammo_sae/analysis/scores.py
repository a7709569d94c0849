"""Concept scores of SAE latents (Mammo-SAE): class-wise means of the per-image mean latent vector.

For a binary concept and class c: zbar_l(c) = mean over images of class c of zbar_l(image) and zbar_l(all) =
mean over all images. Latents are ranked by the deviation s_l(c) = zbar_l(c) - zbar_l(all) (what the
released ranking files use) or by the raw class mean. Sums are streamed in float64 and can be saved,
resumed and merged, so a long run never needs all images' mean latents at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import CodesError
from mammo_sae.core.page_release import release_pages

RANK_BY = ("deviation", "mean", "peak_deviation", "peak", "auroc", "peak_auroc")
# rank_by -> the score table column it sorts on: the class mean of per-image MEAN activations (the paper) or
# of per-image PEAK activations (a latent that fires hard on a few tokens, as on a small lesion, ranks by
# that), each as it is or minus its all-image value; or the AUROC with which the per-image mean or peak
# separates the class from the other one (scale-free: a latent with large activations everywhere does not
# outrank a weaker one that fires only where the class is)
SCORE_COLUMNS = {
    "deviation": "deviation",
    "mean": "zbar",
    "peak_deviation": "peak_deviation",
    "peak": "peak",
    "auroc": "auroc",
    "peak_auroc": "peak_auroc",
}
# AUROC scores have many near-ties; they are broken by the matching deviation, then by latent id
TIE_BREAKS = {"auroc": "deviation", "peak_auroc": "peak_deviation"}
PEAK_COLUMNS = ("peak", "peak_all", "peak_deviation")
AUROC_COLUMNS = ("auroc", "peak_auroc")
AUROC_BLOCK = 256  # latents ranked at once (bounds memory at images x 256)
CLASSES = (0, 1)
UNKNOWN_LABEL = -1


def _label_matrix(labels: pd.DataFrame, concepts: Sequence[str]) -> np.ndarray:
    """[concepts, images] float64 labels in {0, 1, NaN}; -1 / NaN / missing mean unknown."""
    missing = [c for c in concepts if c not in labels.columns]
    if missing:
        raise CodesError(f"labels lack the concept columns {missing}; add them (0/1, NaN or -1 when unknown)")
    rows = []
    for concept in concepts:
        try:
            label_n = labels[concept].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise CodesError(
                f"label column {concept!r} must be 0/1 (int or bool), NaN or -1 when unknown"
            ) from None
        label_n = np.where(
            label_n == UNKNOWN_LABEL, np.nan, label_n
        )  # a fresh array: pandas may hand out views
        bad = ~np.isnan(label_n) & (label_n != 0) & (label_n != 1)
        if bad.any():
            raise CodesError(
                f"label column {concept!r} holds {sorted(set(label_n[bad].tolist()))[:5]}; "
                "concept labels must be 0/1, NaN or -1 (unknown)"
            )
        rows.append(label_n)
    return np.stack(rows) if rows else np.zeros((0, len(labels)))


class ClassMeans:
    """Streaming class-wise sums of per-image mean latents, for binary concept label columns."""

    def __init__(self, d_sae: int, concepts: Sequence[str]) -> None:
        if d_sae < 1 or len(set(concepts)) != len(concepts):
            raise CodesError(
                f"ClassMeans needs d_sae >= 1 and distinct concepts, got {d_sae}, {list(concepts)}"
            )
        self.d_sae = int(d_sae)
        self.concepts = [str(c) for c in concepts]
        self.n_all = 0
        self.sum_all_l = np.zeros(self.d_sae, dtype=np.float64)
        self.n_kc = np.zeros((len(self.concepts), len(CLASSES)), dtype=np.int64)
        self.sum_kcl = np.zeros((len(self.concepts), len(CLASSES), self.d_sae), dtype=np.float64)

    def update(self, zbar_nl: np.ndarray, labels: pd.DataFrame) -> None:
        """Add images: ``zbar_nl`` [n, d_sae] and ``labels`` with one row per image, in the same order (by
        position, not index). Unknown labels (NaN / -1) leave the image out of that concept's classes only."""
        zbar_nl = np.asarray(zbar_nl)
        if zbar_nl.ndim != 2 or zbar_nl.shape[1] != self.d_sae or len(labels) != len(zbar_nl):
            raise CodesError(
                f"update expects zbar [n, {self.d_sae}] and n label rows, got {zbar_nl.shape} and {len(labels)} rows"
            )
        if not np.isfinite(zbar_nl).all():
            raise CodesError("mean latents hold NaN or inf; check the SAE encoding of these images")
        label_kn = _label_matrix(labels, self.concepts)
        member_kcn = np.stack([label_kn == c for c in CLASSES], axis=1)  # [concepts, classes, images]
        zbar64_nl = zbar_nl.astype(np.float64)
        self.n_all += len(zbar_nl)
        self.sum_all_l += zbar64_nl.sum(axis=0)
        self.n_kc += member_kcn.sum(axis=2)
        self.sum_kcl += (member_kcn.reshape(-1, len(zbar_nl)).astype(np.float64) @ zbar64_nl).reshape(
            self.sum_kcl.shape
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays only (np.savez-friendly, no pickle): the sums and counts so far."""
        return {
            "concepts": np.array(self.concepts, dtype=str),
            "n_all": np.array(self.n_all, dtype=np.int64),
            "sum_all": self.sum_all_l.copy(),
            "n_class": self.n_kc.copy(),
            "sum_class": self.sum_kcl.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> ClassMeans:
        """Rebuild from ``state_dict``; shapes are checked so a partial from another run is refused."""
        try:
            concepts = [str(c) for c in np.asarray(state["concepts"]).reshape(-1)]
            sum_all_l = np.asarray(state["sum_all"], dtype=np.float64)
            means = cls(len(sum_all_l), concepts)
            n_kc = np.asarray(state["n_class"], dtype=np.int64)
            sum_kcl = np.asarray(state["sum_class"], dtype=np.float64)
            n_all = int(state["n_all"])
        except KeyError as exc:
            raise CodesError(
                f"ClassMeans state lacks {exc}; it was not written by ClassMeans.state_dict"
            ) from None
        if n_kc.shape != means.n_kc.shape or sum_kcl.shape != means.sum_kcl.shape:
            raise CodesError(
                f"ClassMeans state shapes {n_kc.shape}, {sum_kcl.shape} do not fit its concepts / d_sae"
            )
        means.n_all, means.sum_all_l, means.n_kc, means.sum_kcl = n_all, sum_all_l, n_kc, sum_kcl
        return means

    def merge(self, other: ClassMeans) -> ClassMeans:
        """A new ClassMeans holding both partial results (same d_sae and concepts required)."""
        if other.d_sae != self.d_sae or sorted(other.concepts) != sorted(self.concepts):
            raise CodesError(
                f"can not merge ClassMeans of d_sae {other.d_sae}, concepts {other.concepts} "
                f"into d_sae {self.d_sae}, concepts {self.concepts}"
            )
        take = [other.concepts.index(c) for c in self.concepts]
        merged = ClassMeans(self.d_sae, self.concepts)
        merged.n_all = self.n_all + other.n_all
        merged.sum_all_l = self.sum_all_l + other.sum_all_l
        merged.n_kc = self.n_kc + other.n_kc[take]
        merged.sum_kcl = self.sum_kcl + other.sum_kcl[take]
        return merged

    def table(self) -> pd.DataFrame:
        """Long table, one row per (concept, cls, latent): latent, concept, cls (0/1), n_images (of that
        class), zbar (class mean; NaN when the class has no images), zbar_all, deviation (= zbar - zbar_all)."""
        if self.n_all == 0:
            raise CodesError("ClassMeans has seen no images; call update before table")
        n_k, n_c, d = self.sum_kcl.shape
        with np.errstate(invalid="ignore", divide="ignore"):
            zbar_kcl = self.sum_kcl / self.n_kc[:, :, None]
        zbar_all_l = self.sum_all_l / self.n_all
        return pd.DataFrame(
            {
                "latent": np.tile(np.arange(d, dtype=np.int32), n_k * n_c),
                "concept": np.repeat(np.array(self.concepts, dtype=object), n_c * d),
                "cls": np.tile(np.repeat(np.array(CLASSES, dtype=np.int8), d), n_k),
                "n_images": np.repeat(self.n_kc.reshape(-1), d),
                "zbar": zbar_kcl.reshape(-1),
                "zbar_all": np.tile(zbar_all_l, n_k * n_c),
                "deviation": (zbar_kcl - zbar_all_l).reshape(-1),
            }
        )


def describe_ranking(rank_by: str, cls: int) -> str:
    """What orders a class's latents under ``rank_by``, in words for a reader of the table."""
    _score_column(rank_by)  # refuses an unknown mode
    statistic = "peak" if rank_by.startswith("peak") else "mean"
    if rank_by.endswith("auroc"):
        return (
            f"the AUROC with which each latent's per-image {statistic} activation picks out class-{cls} images "
            f"(ties by the class-{cls} {statistic} minus the all-image {statistic})"
        )
    described = f"the class-{cls} average of each latent's per-image {statistic} activation"
    return described + (" minus its all-image average" if rank_by.endswith("deviation") else "")


def _score_column(rank_by: str) -> str:
    if rank_by not in RANK_BY:
        raise CodesError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    return SCORE_COLUMNS[rank_by]


def _class_rows(table: pd.DataFrame, concept: str, cls: int) -> pd.DataFrame:
    rows = table[(table["concept"] == concept) & (table["cls"] == cls)]
    if rows.empty:
        raise CodesError(
            f"the score table has no rows for concept {concept!r}, class {cls}; check the concept name"
        )
    if int(rows["n_images"].iloc[0]) == 0:
        raise CodesError(
            f"concept {concept!r} class {cls} has no images with that label, so its latents can not be ranked"
        )
    return rows


def _ranked(rows: pd.DataFrame, rank_by: str) -> np.ndarray:
    """Row positions best-first: score desc, ties by the tie-break score desc (AUROC modes), then latent id
    asc."""
    column = _score_column(rank_by)
    if column not in rows:
        raise CodesError(
            f"the score table has no {column!r} column, so it can not rank by {rank_by!r}; "
            "rerun analyze (bundles from older versions only rank by the class means)"
        )
    keys = [rows["latent"].to_numpy()]
    if rank_by in TIE_BREAKS:
        keys.append(-rows[TIE_BREAKS[rank_by]].to_numpy())
    return np.lexsort((*keys, -rows[column].to_numpy()))


def rank_latents(table: pd.DataFrame, concept: str, cls: int, rank_by: str = "deviation") -> np.ndarray:
    """Latent ids (int64) best-first by the chosen score (desc), ties by latent id asc; error when the class
    has no images."""
    rows = _class_rows(table, concept, cls)
    return rows["latent"].to_numpy(dtype=np.int64)[_ranked(rows, rank_by)]


def ranking_table(
    table: pd.DataFrame,
    concepts: Sequence[str] | None = None,
    rank_by: str = "deviation",
    top: int | None = None,
) -> pd.DataFrame:
    """Ranked tables for every concept (default: all in the table) and class: concept, cls, rank (0-based),
    latent, zbar, zbar_all, deviation, n_images; ``top`` keeps the best ``top`` per class. Classes without
    images can not be ranked and are left out."""
    _score_column(rank_by)
    concepts = list(pd.unique(table["concept"])) if concepts is None else list(concepts)
    unknown = sorted(set(concepts) - set(table["concept"]))
    if unknown:
        raise CodesError(
            f"the score table has no concepts {unknown}; it holds {sorted(set(table['concept']))}"
        )
    parts = []
    for concept in concepts:
        for cls in CLASSES:
            rows = table[(table["concept"] == concept) & (table["cls"] == cls)]
            if rows.empty or int(rows["n_images"].iloc[0]) == 0:
                continue
            ranked = rows.iloc[_ranked(rows, rank_by)[:top]]
            parts.append(ranked.assign(rank=np.arange(len(ranked), dtype=np.int32)))
    columns = ["concept", "cls", "rank", "latent", "zbar", "zbar_all", "deviation", "n_images"]
    columns += [c for c in (*PEAK_COLUMNS, *AUROC_COLUMNS) if c in table]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def with_peaks(means: pd.DataFrame, peaks: pd.DataFrame) -> pd.DataFrame:
    """The mean-activation score table with the same statistics of per-image peak activations beside it
    (``peaks`` is the ``table()`` of a ClassMeans fed per-image maxima instead of means)."""
    keys = ["latent", "concept", "cls"]
    renamed = peaks[[*keys, "zbar", "zbar_all", "deviation"]].rename(
        columns={"zbar": "peak", "zbar_all": "peak_all", "deviation": "peak_deviation"}
    )
    merged = means.merge(renamed, on=keys, how="left", validate="one_to_one")
    assert len(merged) == len(means), "every (latent, concept, class) has its peak statistics"
    return merged


def _column_aurocs(values_nl: np.ndarray, positive_n: np.ndarray) -> np.ndarray:
    """AUROC of every column of ``values_nl`` for ``positive_n`` against the rest (ties count one half),
    from average ranks: (sum of the positives' ranks - n1 (n1 + 1) / 2) / (n1 n0)."""
    n1 = int(positive_n.sum())
    n0 = len(positive_n) - n1
    ranks_nl = pd.DataFrame(values_nl).rank(axis=0, method="average").to_numpy()
    return (ranks_nl[positive_n].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def class_aurocs(
    values_nl: np.ndarray, labels: pd.DataFrame, concepts: Sequence[str], block: int = AUROC_BLOCK
) -> np.ndarray:
    """[concepts, d_sae] float64: per concept and latent, the AUROC with which the per-image values
    (``values_nl``, e.g. a memory map of every image's peak latents) separate class 1 from class 0; images
    with an unknown label are left out, and a concept lacking either class gets NaN. Class 0's AUROC is one
    minus class 1's. Latents are ranked ``block`` at a time."""
    n, d = values_nl.shape
    if len(labels) != n:
        raise CodesError(f"class_aurocs got {n} images of values but {len(labels)} label rows")
    label_kn = _label_matrix(labels, concepts)
    out = np.full((len(concepts), d), np.nan)
    for k in range(len(concepts)):
        known = ~np.isnan(label_kn[k])
        positive = label_kn[k][known] == 1
        if positive.all() or not positive.any():
            continue
        rows = np.flatnonzero(known)
        for start in range(0, d, block):
            chunk = np.asarray(values_nl[:, start : start + block], dtype=np.float64)[rows]
            out[k, start : start + block] = _column_aurocs(chunk, positive)
            release_pages(values_nl)
    return out


def with_aurocs(
    table: pd.DataFrame, auroc_kl: np.ndarray, peak_auroc_kl: np.ndarray, concepts: Sequence[str]
) -> pd.DataFrame:
    """The score table with ``auroc`` and ``peak_auroc`` columns: class 1 rows get the AUROC of the
    per-image mean and peak activations, class 0 rows one minus it."""
    out = table.copy()
    position = {c: k for k, c in enumerate(concepts)}
    k = out["concept"].map(position).to_numpy()
    if np.isnan(k.astype(float)).any():
        raise CodesError(f"the score table holds concepts outside {list(concepts)}")
    latent = out["latent"].to_numpy()
    cls1 = out["cls"].to_numpy() == 1
    for column, values in (("auroc", auroc_kl), ("peak_auroc", peak_auroc_kl)):
        a = values[k.astype(int), latent]
        out[column] = np.where(cls1, a, 1.0 - a)
    return out


def split_scores(
    chunks: Iterable[tuple[np.ndarray, np.ndarray, pd.DataFrame]],
    concepts: Sequence[str],
    d_sae: int,
    zbar_nl: np.ndarray,
    zmax_nl: np.ndarray,
) -> pd.DataFrame:
    """The score table of a split, one chunk in memory at a time: class-wise means of per-image mean and peak
    latents, and their class AUROCs.

    ``chunks`` yields (mean latents [n, d_sae], peak latents [n, d_sae], labels [n, concepts]); ``zbar_nl`` and
    ``zmax_nl`` (e.g. memory maps, one row per image of the split) receive every chunk's rows, which the class
    AUROCs then rank."""
    means, peaks = ClassMeans(d_sae, concepts), ClassMeans(d_sae, concepts)
    parts, filled = [], 0
    for chunk_zbar, chunk_zmax, chunk_labels in chunks:
        n = len(chunk_labels)
        means.update(chunk_zbar, chunk_labels)
        peaks.update(chunk_zmax, chunk_labels)
        zbar_nl[filled : filled + n] = chunk_zbar
        zmax_nl[filled : filled + n] = chunk_zmax
        release_pages(zbar_nl, zmax_nl)  # written rows stay in the files, not in memory
        parts.append(chunk_labels.reset_index(drop=True))
        filled += n
    assert filled == len(zbar_nl) == len(zmax_nl), "every image of the split has its row"
    labels = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(concepts))
    table = with_peaks(means.table(), peaks.table())
    return with_aurocs(
        table,
        class_aurocs(zbar_nl, labels, concepts),
        class_aurocs(zmax_nl, labels, concepts),
        concepts,
    )
