"""Writes a bundle's files: each atomically, under the names of ``bundle.format``, remembered in order so
the manifest (written last, by ``finish``) lists every one with its size and sha256."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import TokenCodes, save_concatenation
from mammo_sae.bundle import format as bf
from mammo_sae.core.atomic import atomic_open
from mammo_sae.core.page_release import release_pages


class BundleWriter:
    """The output files of one bundle folder (``out``)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []
        out.mkdir(parents=True, exist_ok=True)

    def _done(self, name: str) -> None:
        if name not in self.written:
            self.written.append(name)

    def parquet(self, name: str, frame: pd.DataFrame) -> None:
        with atomic_open(self.out / name, "wb") as handle:
            frame.to_parquet(handle, index=False)
        self._done(name)

    def npy(self, name: str, array: np.ndarray) -> None:
        with atomic_open(self.out / name, "wb") as handle:
            np.save(handle, array)
        self._done(name)

    def npz(self, name: str, **arrays: np.ndarray) -> None:
        with atomic_open(self.out / name, "wb") as handle:
            np.savez(handle, **arrays)
        self._done(name)

    def text(self, name: str, text: str) -> None:
        with atomic_open(self.out / name, "w") as handle:
            handle.write(text)
        self._done(name)

    def adopt(self, name: str) -> None:
        """Count a file that another writer (e.g. the chart renderer) put at ``out / name``."""
        assert (self.out / name).is_file(), f"{name} was written"
        self._done(name)

    def codes_and_mean_latents(
        self,
        parts: Iterator[tuple[TokenCodes, np.ndarray]],
        *,
        grid: tuple[int, int],
        d_sae: int,
        n_images: int,
        nnz: int,
    ) -> tuple[TokenCodes, np.ndarray]:
        """Stream every chunk's (codes, mean latents [n, d_sae]) into ``codes/`` and ``mean_latents.npy`` (one
        chunk in memory at a time); returns both memory-mapped."""
        partial = self.out / (bf.MEAN_LATENTS + ".partial")
        zbar_file = np.lib.format.open_memmap(partial, "w+", np.float32, (n_images, d_sae))

        def with_mean_latents() -> Iterator[TokenCodes]:
            offset = 0
            for codes, zbar_nl in parts:
                zbar_file[offset : offset + codes.n_images] = zbar_nl
                release_pages(zbar_file)  # written rows stay in the file, not in this process's memory
                offset += codes.n_images
                yield codes
            assert offset == n_images, "every analysed image has its mean latents"

        save_concatenation(
            self.out / bf.CODES_DIR, with_mean_latents(), grid=grid, d_sae=d_sae, n_images=n_images, nnz=nnz
        )
        zbar_file.flush()
        os.replace(partial, self.out / bf.MEAN_LATENTS)
        self._done(bf.MEAN_LATENTS)
        self._done(bf.CODES_DIR)
        return TokenCodes.load(self.out / bf.CODES_DIR), np.load(self.out / bf.MEAN_LATENTS, mmap_mode="r")

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write ``manifest.json`` (last: its presence means the bundle is complete) with every file's record."""
        optional = [name for name in bf.OPTIONAL_OUTPUTS if name in self.written]
        assert sorted(self.written) == sorted([*bf.OUTPUTS, *optional]), f"every output: {self.written}"
        complete = manifest | {"files": bf.file_records(self.out, [*bf.OUTPUTS, *optional])}
        bf.write_manifest(self.out, complete)
        return complete
