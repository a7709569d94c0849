"""Every knob of `python -m mammo_sae.analyze` (the run that writes a bundle), checked before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from mammo_sae.analysis.interventions import parse_ks
from mammo_sae.analysis.localisation import MapThreshold
from mammo_sae.analysis.profiles import FlagThresholds
from mammo_sae.analysis.regions import RegionSettings
from mammo_sae.analysis.scores import RANK_BY
from mammo_sae.core.config_cli import REQUIRED, command_line, knob, module_prog
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.frame_policy import FRAMES, FRAMES_HELP, SPLITS

#: knobs that say where inputs and output are (recorded by identity in a manifest, never as paths)
LOCATION_KNOBS = ("data", "classifier", "sae", "out", "score_data", "score_bundle", "backbone")
#: knobs that change how a run goes, never what it computes (chunk_images does: it lays out the work folder)
RUNTIME_KNOBS = ("batch_size", "workers", "device", "overwrite", "progress")


class AnalyzeError(MammoSaeError):
    """The analysis was asked for something it cannot do (bad flags, mismatched inputs, no images)."""


@dataclass(frozen=True)
class AnalyzeConfig:
    """Every knob of `python -m mammo_sae.analyze`."""

    data: str = knob(REQUIRED, "VinDr-Mammo layout root (real release or phantoms)")
    classifier: tuple[str, ...] = knob(
        REQUIRED,
        "classifier file (project .safetensors or Mammo-CLIP downstream .pth); repeat for more heads",
        repeat=True,
    )
    sae: str = knob(REQUIRED, "SAE folder (sae_weights.safetensors + cfg.json)")
    out: str = knob(
        REQUIRED, "bundle folder to write (resumed if an unfinished run of the same inputs is there)"
    )
    backbone: str | None = knob(
        None, "backbone spec for the features (default: the first classifier's encoder)"
    )
    split: str = knob("test", "split to analyse (codes, patches, maps, localisation, curves)", choices=SPLITS)
    score_split: str = knob("training", "split whose class-wise means rank the latents", choices=SPLITS)
    score_data: str | None = knob(
        None, "root holding the score split (default: --data), e.g. the training phantoms"
    )
    score_bundle: str | None = knob(
        None,
        "take the concept scores that rank the latents from this bundle (built with the same SAE), e.g. "
        "for an imported folder without labels; instead of --score-data",
    )
    limit: int | None = knob(None, "only the first N images of each split")
    frames: str = knob("auto", FRAMES_HELP, choices=FRAMES)
    concepts: str | None = knob(None, "comma-separated label columns to score (default: mass,calcification)")
    rank_by: str = knob(
        "deviation",
        "concept score that ranks latents: class mean (minus the all-image mean) of per-image mean or peak "
        "activations, or the class AUROC of either",
        choices=RANK_BY,
    )
    pointing_tolerance: float = knob(
        15.0, "pointing game: a peak within this many original-image pixels of a box is a hit (0 = inside)"
    )
    ks: str = knob("paper", "k values of the keep/suppress curves: 'paper' or e.g. 0,1,5,10,all")
    top_patches: int = knob(32, "top-activating patches kept per latent (one per image)")
    localise_top: int = knob(10, "latents per concept and class whose maps are scored against the boxes")
    threshold: str = knob(
        "fraction",
        "latent-map threshold: a fraction of the map's max, or a percentile",
        choices=("fraction", "percentile"),
    )
    threshold_value: float | None = knob(
        None, "threshold value (default 0.3 for fraction, 95 for percentile)"
    )
    codes_top_n: int | None = knob(
        None, "keep at most N latents per token in the stored codes (default: all)"
    )
    box_overlap: float = knob(
        0.25, "regions: a token is in a finding's box region when this share of it lies inside the box"
    )
    near_tokens: int = knob(2, "regions: tokens within this many tokens of a box are 'near' it")
    flag_off_breast: float = knob(
        0.5,
        "flag a latent off_breast when this share of its activation lies off the breast (background, border)",
    )
    flag_marker: float = knob(0.5, "flag a latent marker when this share of its activation lies on markers")
    flag_lesion: float = knob(
        0.5, "flag a latent lesion:<category> when this share of its peaks lands in that category's boxes"
    )
    counterfactuals: str = knob(
        "auto",
        "marker counterfactuals (each image re-rendered with and without its burned-in marker): 'auto' on "
        "phantom datasets, 'off' never",
        choices=("auto", "off"),
    )
    batch_size: int = knob(4, "images per forward pass")
    workers: int = knob(2, "DataLoader processes decoding and preprocessing images")
    chunk_images: int = knob(32, "images per committed chunk (the unit of resume)")
    device: str = knob("cpu", "where the models run", choices=("cpu", "cuda"))
    overwrite: bool = knob(False, "replace a complete bundle or an unfinished run of other inputs in --out")
    progress: bool = knob(True, "show a progress bar")
    warning: tuple[str, ...] = knob(
        (),
        "a warning to record in the bundle manifest's warnings, which the app's Overview shows (repeatable), "
        "e.g. that the bundle is a toy build",
        repeat=True,
    )

    def validate(self) -> AnalyzeConfig:
        for name in ("top_patches", "localise_top", "batch_size", "chunk_images"):
            if getattr(self, name) < 1:
                raise AnalyzeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise AnalyzeError(f"--workers must be >= 0, got {self.workers}")
        if self.codes_top_n is not None and self.codes_top_n < 1:
            raise AnalyzeError(f"--codes-top-n must be >= 1, got {self.codes_top_n}")
        if not (math.isfinite(self.pointing_tolerance) and self.pointing_tolerance >= 0):
            raise AnalyzeError(
                f"--pointing-tolerance must be a number >= 0 (pixels), got {self.pointing_tolerance}"
            )
        if not self.classifier:
            raise AnalyzeError("give at least one --classifier FILE")
        if self.score_bundle is not None and self.score_data is not None:
            raise AnalyzeError(
                "give --score-data or --score-bundle, not both: each says where the ranking comes from"
            )
        self.map_threshold()
        self.k_values()
        self.region_settings()
        self.flag_thresholds()
        return self

    def region_settings(self) -> RegionSettings:
        try:
            return RegionSettings(box_overlap=self.box_overlap, near_tokens=self.near_tokens)
        except MammoSaeError as error:
            raise AnalyzeError(f"--box-overlap / --near-tokens: {error}") from None

    def flag_thresholds(self) -> FlagThresholds:
        try:
            return FlagThresholds(
                off_breast=self.flag_off_breast, marker=self.flag_marker, lesion_pointing=self.flag_lesion
            )
        except MammoSaeError as error:
            raise AnalyzeError(f"--flag-off-breast / --flag-marker / --flag-lesion: {error}") from None

    def k_values(self) -> tuple[int | None, ...]:
        try:
            return parse_ks(self.ks)
        except MammoSaeError as error:
            raise AnalyzeError(f"--ks: {error}") from None

    def map_threshold(self) -> MapThreshold:
        value = self.threshold_value
        if value is None:
            value = 0.3 if self.threshold == "fraction" else 95.0
        try:
            return MapThreshold(method=self.threshold, value=float(value))
        except MammoSaeError as error:
            raise AnalyzeError(f"--threshold-value: {error}") from None

    def command(self, locations: dict[str, str | tuple[str, ...] | None] | None = None) -> str:
        """The command line that (re)builds this bundle; ``locations`` replaces the values of location knobs
        (e.g. with placeholders, for a manifest that records no path of this machine). Knobs that change
        only how the run goes are left at their defaults."""
        assert set(locations or {}) <= set(LOCATION_KNOBS), "only location knobs take placeholders"
        runtime = {field.name: field.default for field in fields(self) if field.name in RUNTIME_KNOBS}
        return command_line(module_prog("analyze"), replace(self, **(dict(locations or {}) | runtime)))
