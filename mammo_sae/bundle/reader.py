"""Open a bundle: its tables and arrays (loaded lazily, arrays memory-mapped) and the per-case questions
the app asks ("which latents drive this case's logit?", "what if these latents were suppressed?").

Every file is checked against the sha256 in the manifest the first time it is loaded, so a damaged or
edited table is refused with the command that rebuilds the bundle, never shown."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.interventions import HeadLinear, contributions, shortcut_logits, topk_union
from mammo_sae.bundle import format as bf
from mammo_sae.bundle.inputs import stale_reasons
from mammo_sae.core.hashing import check_files


class Bundle:
    """A complete analysis bundle, read-only."""

    def __init__(self, path: Path, manifest: dict[str, Any], *, verified: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        self._verified: set[str] = set(manifest["files"]) if verified else set()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        check_inputs: bool = True,
        verify: bool = False,
        data_root: str | os.PathLike[str] | None = None,
    ) -> Bundle:
        """Open ``path``; BundleError when incomplete or damaged, BundleStaleError when its inputs changed.

        ``check_inputs`` re-hashes the classifier, SAE and dataset files; ``verify`` re-hashes every output
        file now (sizes are always checked; without it each file is hashed when it is first loaded)."""
        folder = Path(path)
        manifest = bf.read_manifest(folder)
        problems = list(check_files(folder, manifest["files"], hashes=verify).values())
        if problems:
            raise bf.damaged_error(folder, manifest, problems)
        bundle = cls(folder, manifest, verified=verify)
        if check_inputs:
            reasons = bundle.stale_reasons(data_root)
            if reasons:
                raise bf.BundleStaleError(folder, reasons, manifest.get("command"))
        return bundle

    def stale_reasons(self, data_root: str | os.PathLike[str] | None = None) -> list[str]:
        return stale_reasons(self.manifest["inputs"], self.path, Path(data_root) if data_root else None)

    # --- what it is ------------------------------------------------------------------------------------

    @property
    def synthetic(self) -> bool:
        return bool(self.manifest["synthetic"])

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.manifest["tasks"])

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(self.manifest["concepts"])

    @property
    def frame_size(self) -> tuple[int, int]:
        return tuple(self.manifest["frame_size"])  # type: ignore[return-value]

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.manifest["grid"])  # type: ignore[return-value]

    @property
    def rank_by(self) -> str:
        """The score that ordered the latents (bundles from before the choice existed used the paper's)."""
        return str(self.manifest["config"].get("rank_by", "deviation"))

    @property
    def d_sae(self) -> int:
        return int(self.manifest["sae"]["d_sae"])

    @property
    def data_root(self) -> Path:
        return bf.resolve_from(self.manifest["inputs"]["dataset"]["root"], self.path)

    # --- tables and arrays -----------------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        """``name`` (a file, or a folder of files) after checking it against the manifest's sha256 once."""
        records = self.manifest["files"]
        pending = [n for n in records if (n == name or n.startswith(f"{name}/")) and n not in self._verified]
        problems = list(check_files(self.path, {n: records[n] for n in pending}, hashes=True).values())
        if problems:
            raise bf.damaged_error(self.path, self.manifest, problems)
        self._verified.update(pending)
        return self.path / name

    def _table(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self._file(name))

    images = functools.cached_property(lambda self: self._table(bf.IMAGES))
    rows = functools.cached_property(lambda self: self._table(bf.ROWS))
    latents = functools.cached_property(lambda self: self._table(bf.LATENTS).set_index("latent"))
    scores = functools.cached_property(lambda self: self._table(bf.SCORES))
    rankings = functools.cached_property(lambda self: self._table(bf.RANKINGS))
    patches = functools.cached_property(lambda self: self._table(bf.PATCHES))
    boxes = functools.cached_property(lambda self: self._table(bf.BOXES))
    localisation = functools.cached_property(lambda self: self._table(bf.LOCALISATION))
    baselines = functools.cached_property(lambda self: self._table(bf.BASELINES))
    curves = functools.cached_property(lambda self: self._table(bf.CURVES))

    @functools.cached_property
    def histograms(self) -> np.ndarray:
        return np.load(self._file(bf.HISTOGRAMS))

    @functools.cached_property
    def mean_latents(self) -> np.ndarray:
        """[images, d_sae] float32, memory-mapped."""
        return np.load(self._file(bf.MEAN_LATENTS), mmap_mode="r")

    @functools.cached_property
    def codes(self) -> TokenCodes:
        return TokenCodes.load(self._file(bf.CODES_DIR))

    @functools.cached_property
    def heads(self) -> HeadLinear:
        with np.load(self._file(bf.HEADS)) as data:
            return HeadLinear(tuple(str(t) for t in data["tasks"]), data["effect_lh"], data["const_h"])

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {image_id: i for i, image_id in enumerate(self.images["image_id"])}

    def report_text(self) -> str:
        return self._file(bf.REPORT).read_text()

    # --- per case ----------------------------------------------------------------------------------------

    def position(self, image: str | int) -> int:
        if isinstance(image, (int, np.integer)):
            if not 0 <= int(image) < len(self.images):
                raise bf.BundleError(f"image position {image} is outside 0..{len(self.images) - 1}")
            return int(image)
        if image not in self._positions:
            raise bf.BundleError(
                f"image {image!r} is not in this bundle's {self.manifest['splits']['analysis']} split"
            )
        return self._positions[image]

    def latent_map(self, image: str | int, latent: int) -> np.ndarray:
        """[gh, gw] activation map of one latent on one image."""
        return self.codes.latent_map(self.position(image), int(latent))

    def contributions(self, image: str | int, task: str) -> pd.DataFrame:
        """Each latent's contribution to ``task``'s logit on this image (sums with ``attrs['const']`` to it)."""
        return contributions(
            np.asarray(self.mean_latents[self.position(image)], dtype=np.float32), self.heads, task
        )

    def top_latents(self, concept: str, cls: int, k: int | None) -> np.ndarray:
        ranked = self.rankings[(self.rankings["concept"] == concept) & (self.rankings["cls"] == cls)]
        ordered = ranked.sort_values("rank")["latent"].to_numpy()
        return ordered if k is None else ordered[:k]

    def topk_union(self, concept: str, k: int | None) -> np.ndarray:
        return topk_union(
            self.top_latents(concept, 0, None), self.top_latents(concept, 1, None), k, self.d_sae
        )

    def logits(
        self,
        scale_l: np.ndarray | None = None,
        images: list[str | int] | None = None,
        *,
        error_term: bool = False,
    ) -> np.ndarray:
        """[n, heads] logits with latents scaled by ``scale_l`` (exact shortcut), for ``images`` or all."""
        positions = (
            np.arange(len(self.images)) if images is None else np.array([self.position(i) for i in images])
        )
        zbar = np.asarray(self.mean_latents[positions], dtype=np.float32)
        error = None
        if error_term:
            error = self.images[[f"error_{t}" for t in self.heads.tasks]].to_numpy()[positions]
        return shortcut_logits(zbar, self.heads, scale_l, error)


def open_bundle(path: str | os.PathLike[str], **options: Any) -> Bundle:
    return Bundle.open(path, **options)
