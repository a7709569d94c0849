"""Open a bundle: its tables and arrays (loaded lazily, arrays memory-mapped) and the per-case questions
the app asks ("which latents drive this case's logit?", "what if these latents were suppressed?").

Every file is checked against the sha256 in the manifest the first time it is loaded, so a damaged or
edited table is refused with the command that rebuilds the bundle, never shown. The inputs (classifiers,
SAE, dataset) are found by identity (``bundle.inputs``): the manifest names no folder of the machine that
built it."""

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
from mammo_sae.bundle.fingerprints import phantom_command
from mammo_sae.bundle.inputs import DATA_ENV, InputLocations, backbone_spec, dataset_matches, locate_inputs
from mammo_sae.bundle.locations import recall, remember
from mammo_sae.core.hashing import check_files
from mammo_sae.core.user_data import user_data_dir


class Bundle:
    """A complete analysis bundle, read-only."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        *,
        verified: bool = False,
        data_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._verified: set[str] = set(manifest["files"]) if verified else set()
        self._data_root = Path(data_root) if data_root else None

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

        ``check_inputs`` finds and re-hashes the classifier, SAE and dataset files; ``verify`` re-hashes every
        output file now (sizes are always checked; without it each file is hashed when it is first loaded).
        ``data_root``: where the analysed dataset is, when it is nowhere the bundle looks by itself."""
        folder = Path(path)
        manifest = bf.read_manifest(folder)
        bundle = cls(folder, manifest, verified=verify, data_root=data_root)
        problems = list(check_files(folder, manifest["files"], hashes=verify).values())
        if problems:
            raise bf.damaged_error(folder, bundle.rebuild_command, problems)
        if check_inputs:
            reasons = bundle.stale_reasons()
            if reasons:
                raise bf.BundleStaleError(folder, reasons, bundle.rebuild_command)
        return bundle

    # --- where its inputs are -----------------------------------------------------------------------------

    @functools.cached_property
    def _remembered(self) -> dict[str, Any]:
        return recall(self.path, self.manifest["run_id"])

    @property
    def rebuild_command(self) -> str:
        """The command that rebuilds this bundle: with this machine's paths when it was built here, else the
        manifest's portable one (run in the folder holding the bundle; see its ``placeholders``)."""
        return str(self._remembered.get("command") or self.manifest["command"])

    def locate(self, data_root: str | os.PathLike[str] | None = None) -> InputLocations:
        """Every input on this machine, checked against the manifest's hashes (re-hashed on each call)."""
        root = Path(data_root) if data_root else self._data_root
        return locate_inputs(self.manifest["inputs"], self.path, self._remembered, root)

    @functools.cached_property
    def inputs(self) -> InputLocations:
        """The inputs as found the first time they were asked for."""
        return self.locate()

    def stale_reasons(self, data_root: str | os.PathLike[str] | None = None) -> list[str]:
        return self.locate(data_root).reasons

    def find_data_root(self) -> Path | None:
        """The analysed dataset's root on this machine, or None."""
        return self.inputs.dataset

    @property
    def data_root(self) -> Path:
        """The analysed dataset's root; ``DatasetNotFoundError`` saying how to provide it when it is absent."""
        root = self.find_data_root()
        if root is None:
            raise bf.DatasetNotFoundError(self.missing_dataset_message())
        return root

    def remember_data_root(self, root: str | os.PathLike[str]) -> Path:
        """Record (in the user data folder) that this bundle's dataset is at ``root``, after checking that it
        is the dataset analysed; BundleError otherwise."""
        folder = Path(root).resolve()
        if not dataset_matches(self.manifest["inputs"]["dataset"], folder):
            raise bf.BundleError(
                f"{folder} is not the dataset this bundle analysed: {self._dataset_identity()}"
            )
        if not remember(self.path, self.manifest["run_id"], {"dataset": folder}):
            raise bf.BundleError(
                f"cannot record the dataset root in {user_data_dir()}: the folder is not writable"
            )
        for name in ("_remembered", "inputs"):
            self.__dict__.pop(name, None)
        return folder

    def _dataset_identity(self) -> str:
        dataset = self.manifest["inputs"]["dataset"]
        phantom = dataset.get("phantom")
        if phantom:
            return (
                f"synthetic phantoms (generator {phantom['generator_version']}, pixel checksum "
                f"{phantom['pixel_checksum'][:12]}), made by: {phantom_command(phantom, 'DIR')}"
            )
        hashes = ", ".join(f"{name} sha256 {sha[:12]}" for name, sha in dataset["files"].items())
        return f"a {dataset['kind']} root with {hashes}"

    def missing_dataset_message(self) -> str:
        """Where the dataset was looked for, what it is and how to provide it."""
        return (
            f"the dataset of the bundle {self.path} is not on this machine (looked beside the bundle, where this "
            f"machine built it, in {DATA_ENV} and in {user_data_dir()}); it is {self._dataset_identity()}. Set "
            f"{DATA_ENV} to its root (DIR above for phantoms); the tables and charts work without it"
        )

    def _found(self, path: Path | None, what: str) -> Path:
        if path is None:
            raise bf.BundleError(
                f"the bundle's {what} is not on this machine (looked beside the bundle and where this machine "
                "built it); put it beside the bundle folder, or rebuild the bundle with:\n  "
                f"{self.rebuild_command} --overwrite"
            )
        return path

    @property
    def classifier_paths(self) -> list[Path]:
        """The classifier files, found on this machine (BundleError naming what is missing)."""
        records = self.manifest["inputs"]["classifiers"]
        return [
            self._found(path, f"classifier file {record.get('name') or record.get('path')}")
            for path, record in zip(self.inputs.classifiers, records, strict=True)
        ]

    @property
    def sae_dir(self) -> Path:
        """The SAE folder, found on this machine (BundleError when it is not)."""
        record = self.manifest["inputs"]["sae"]
        return self._found(self.inputs.sae, f"SAE folder {record.get('name') or record.get('path')}")

    @property
    def backbone_spec(self) -> str | None:
        """The spec that rebuilds a spec-built feature backbone here (None: it is the first classifier's)."""
        record = self.manifest["inputs"]["backbone"]
        if record.get("source") != "spec":
            return None
        weights = self.inputs.backbone_weights
        if record.get("weights_sha256") and weights is None:
            self._found(
                None, f"backbone weights file {record.get('weights_name') or record.get('weights_file')}"
            )
        spec = backbone_spec(record, weights)
        assert spec is not None
        return spec

    # --- what it is ------------------------------------------------------------------------------------

    @property
    def synthetic(self) -> bool:
        return bool(self.manifest["synthetic"])

    @property
    def models_synthetic(self) -> bool:
        """Whether the classifier and SAE were trained on phantoms (bundles from before the key: when the
        analysed images were): their outputs on an image that is not a phantom mean nothing."""
        return bool(self.manifest.get("models_synthetic", self.manifest["synthetic"]))

    @property
    def labelled(self) -> bool:
        """Whether the analysed images have labels (an imported DICOM folder has none: no AUROC, curves,
        pointing or localisation; the concept ranking comes from the score data)."""
        return bool(self.manifest.get("labelled", True))

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

    # --- tables and arrays -----------------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        """``name`` (a file, or a folder of files) after checking it against the manifest's sha256 once."""
        records = self.manifest["files"]
        pending = [n for n in records if (n == name or n.startswith(f"{name}/")) and n not in self._verified]
        problems = list(check_files(self.path, {n: records[n] for n in pending}, hashes=True).values())
        if problems:
            raise bf.damaged_error(self.path, self.rebuild_command, problems)
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

    def _optional_table(self, name: str) -> pd.DataFrame | None:
        """A table only newer bundles (or only phantom bundles) have; None when this bundle lacks it."""
        return self._table(name) if name in self.manifest["files"] else None

    evidence_regions = functools.cached_property(lambda self: self._optional_table(bf.EVIDENCE_REGIONS))
    evidence_split = functools.cached_property(lambda self: self._optional_table(bf.EVIDENCE_SPLIT))
    shortcuts = functools.cached_property(lambda self: self._optional_table(bf.SHORTCUTS))
    counterfactual = functools.cached_property(lambda self: self._optional_table(bf.COUNTERFACTUAL))
    counterfactual_latents = functools.cached_property(
        lambda self: self._optional_table(bf.COUNTERFACTUAL_LATENTS)
    )
    #: where each image's laterality and view came from (tag, text or image); bundles of imported folders
    orientation = functools.cached_property(lambda self: self._optional_table(bf.ORIENTATION))

    def orientation_of(self, image: str) -> dict[str, object] | None:
        """One image's orientation provenance (``laterality_from`` / ``view_from``: "tag", "text" or
        "image"; sources and confidences), or None when the bundle's laterality and view are its CSV's."""
        table = self.orientation
        if table is None:
            return None
        match = table[table["image_id"] == image]
        return None if match.empty else match.iloc[0].to_dict()

    @property
    def has_evidence(self) -> bool:
        """Whether the bundle holds token evidence and regions (format 3 and later)."""
        return bf.EVIDENCE in self.manifest["files"] and bf.REGIONS in self.manifest["files"]

    @functools.cached_property
    def _evidence_nht(self) -> np.ndarray | None:
        return np.load(self._file(bf.EVIDENCE), mmap_mode="r") if self.has_evidence else None

    @functools.cached_property
    def _regions(self) -> tuple[np.ndarray, tuple[str, ...]] | None:
        if not self.has_evidence:
            return None
        with np.load(self._file(bf.REGIONS)) as data:
            return data["labels"], tuple(str(n) for n in data["names"])

    @property
    def region_names(self) -> tuple[str, ...]:
        """Names of the region labels (index = label); empty for bundles without regions."""
        return self._regions[1] if self._regions else ()

    def evidence(self, image: str | int) -> np.ndarray | None:
        """[heads, gh, gw] float32: each token's share of each head's logit minus its bias (the heads of
        ``heads.tasks``; the map sums to the logit minus the bias); None for bundles without evidence."""
        if self._evidence_nht is None:
            return None
        return np.asarray(self._evidence_nht[self.position(image)], dtype=np.float32).reshape(-1, *self.grid)

    def regions(self, image: str | int) -> np.ndarray | None:
        """[gh, gw] uint8 region label of each token (names in ``region_names``); None without regions."""
        if self._regions is None:
            return None
        return self._regions[0][self.position(image)].reshape(self.grid)

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
