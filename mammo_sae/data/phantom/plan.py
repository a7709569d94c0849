"""What each phantom image will contain, decided before any pixel is drawn.

A plan is cheap and sequential; rendering is expensive and parallel. Every random choice is drawn from
a `np.random.SeedSequence` keyed by (seed, study index, view index, purpose), so an image never depends
on the order in which images are produced, nor (except for the split and the at-least-one encoding
rule) on how many studies are generated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from mammo_sae.data.phantom.config import PhantomConfig
from mammo_sae.data.phantom.lesions import BENIGN_SUBTYPES, MASS_SUBTYPES

#: The four views of a study in the order they are generated and listed.
VIEWS: tuple[tuple[str, str], ...] = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))
DENSITIES = ("A", "B", "C", "D")

# Purposes of the random streams (the last SeedSequence entropy word before any object index).
STREAM_STUDY, STREAM_IMAGE, STREAM_RENDER, STREAM_OBJECT, STREAM_SPLIT = 1, 2, 3, 4, 5

_MASS_BIRADS = {  # P(BI-RADS 3, 4, 5 | subtype)
    "round": (0.6, 0.35, 0.05),
    "oval": (0.6, 0.35, 0.05),
    "irregular": (0.15, 0.6, 0.25),
    "spiculated": (0.0, 0.3, 0.7),
}
_CALC_BIRADS = (0.25, 0.55, 0.2)


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one purpose: SeedSequence over the seed and the keys (order-independent use)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def hex_id(seed: int, *parts: object) -> str:
    """A 32-character lowercase hex id derived from the seed (VinDr-style anonymised UID)."""
    text = ":".join(["mammo-sae-phantom", str(seed), *map(str, parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PlannedObject:
    """A planted object of one breast, shown on both of its views.

    `depth` runs from the chest wall (0) to the skin (1); `across_cc` / `across_mlo` place it between
    the top (-1) and bottom (+1) of the breast in each view, so CC and MLO positions correspond.
    `size` is a fraction of the image width (mass radius, cluster radius, benign size).
    """

    lesion_id: str
    kind: str  # "mass" | "calcification" | "benign"
    subtype: str
    depth: float
    across_cc: float
    across_mlo: float
    size: float
    contrast: float
    n_specks: int = 0
    birads: int = 0  # finding BI-RADS 3..5; 0 for benign structures
    group: int = -1  # objects of one group form one finding row; -1 for benign structures


@dataclass(frozen=True)
class EncodingChoice:
    """How one image is stored; window values are computed from the rendered pixels."""

    photometric: str
    bits_stored: int
    transfer_syntax: str
    window_names: tuple[str, ...]
    sigmoid: bool


@dataclass(frozen=True)
class ImagePlan:
    """Everything needed to render and label one image."""

    seed: int
    study_index: int
    view_index: int
    study_id: str
    series_id: str
    image_id: str
    laterality: str
    view: str
    density: str
    breast_size: float
    objects: tuple[PlannedObject, ...]
    marker: bool
    split: str
    breast_birads: int
    encoding: EncodingChoice

    def has(self, kind: str) -> bool:
        return any(o.kind == kind for o in self.objects)


def _choice(rng: np.random.Generator, options: tuple, weights) -> object:
    p = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _position(rng: np.random.Generator) -> tuple[float, float, float]:
    return float(rng.uniform(0.25, 0.85)), float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8))


def _breast_objects(
    rng: np.random.Generator, config: PhantomConfig, study_id: str, laterality: str
) -> tuple[PlannedObject, ...]:
    """Findings and benign structures of one breast."""
    objects: list[PlannedObject] = []
    has_mass = rng.random() < config.mass_rate
    has_calc = rng.random() < config.calcification_rate
    co_located = has_mass and has_calc and rng.random() < config.co_located_rate
    mass = None
    if has_mass:
        subtype = str(_choice(rng, MASS_SUBTYPES, (1, 1, 1, 1)))
        depth, across_cc, across_mlo = _position(rng)
        mass = PlannedObject(
            lesion_id=f"{study_id}-{laterality}-mass",
            kind="mass",
            subtype=subtype,
            depth=depth,
            across_cc=across_cc,
            across_mlo=across_mlo,
            size=float(rng.uniform(0.02, 0.055)),
            contrast=float(rng.uniform(0.2, 0.38)),
            birads=int(_choice(rng, (3, 4, 5), _MASS_BIRADS[subtype])),
            group=0,
        )
        objects.append(mass)
    if has_calc:
        depth, across_cc, across_mlo = _position(rng)
        if co_located and mass is not None:
            depth, across_cc, across_mlo = mass.depth, mass.across_cc, mass.across_mlo
        objects.append(
            PlannedObject(
                lesion_id=f"{study_id}-{laterality}-calcification",
                kind="calcification",
                subtype="co-located" if co_located else "cluster",
                depth=depth,
                across_cc=across_cc,
                across_mlo=across_mlo,
                size=float(rng.uniform(0.012, 0.03)),
                contrast=float(rng.uniform(0.35, 0.6)),
                n_specks=int(rng.integers(5, 31)),
                birads=int(_choice(rng, (3, 4, 5), _CALC_BIRADS)),
                group=0 if co_located else 1,
            )
        )
    if rng.random() < config.benign_rate:
        subtype = str(_choice(rng, BENIGN_SUBTYPES, (1, 1)))
        depth, across_cc, across_mlo = _position(rng)
        objects.append(
            PlannedObject(
                lesion_id=f"{study_id}-{laterality}-benign",
                kind="benign",
                subtype=subtype,
                depth=depth,
                across_cc=across_cc,
                across_mlo=across_mlo,
                size=float(rng.uniform(0.005, 0.009) if subtype == "coarse" else rng.uniform(0.06, 0.15)),
                contrast=float(rng.uniform(0.5, 0.8) if subtype == "coarse" else rng.uniform(0.18, 0.32)),
            )
        )
    return tuple(objects)


def breast_birads(rng: np.random.Generator, objects: tuple[PlannedObject, ...]) -> int:
    """Max finding BI-RADS; without findings 2 when a benign structure is seen (mostly), else 1 (mostly)."""
    findings = [o.birads for o in objects if o.kind != "benign"]
    if findings:
        return max(findings)
    has_benign = any(o.kind == "benign" for o in objects)
    return 2 if rng.random() < (0.85 if has_benign else 0.1) else 1


def _encoding(rng: np.random.Generator, config: PhantomConfig) -> tuple[EncodingChoice, np.ndarray]:
    draws = rng.random(4)
    names = ("NORMAL", "HARDER", "SOFTER") if rng.random() < 0.5 else ("NORMAL", "HARDER")
    choice = EncodingChoice(
        photometric="MONOCHROME1" if draws[0] < config.monochrome1_rate else "MONOCHROME2",
        bits_stored=12 if draws[1] < 0.5 else 16,
        transfer_syntax="jpeg2000-lossless" if draws[2] < config.jpeg2000_rate else "explicit-little",
        window_names=names,
        sigmoid=bool(draws[3] < config.sigmoid_rate),
    )
    return choice, draws


def _split(config: PhantomConfig) -> list[str]:
    """Exactly round(test_fraction x studies) test studies (>= 1 and <= studies - 1 when there are >= 2
    studies and the fraction is strictly between 0 and 1; 1.0 makes a held-out set of test studies only),
    chosen by a per-study random key so the choice barely moves as studies are added."""
    n = config.studies
    n_test = round(config.test_fraction * n)
    if 0 < config.test_fraction < 1 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    keys = [rng_for(config.seed, i, STREAM_SPLIT).random() for i in range(n)]
    test = set(np.argsort(keys, kind="stable")[:n_test].tolist())
    return ["test" if i in test else "training" for i in range(n)]


def plan_dataset(config: PhantomConfig) -> list[ImagePlan]:
    """Plan every image of the dataset, in breast-level CSV order (study, then VIEWS)."""
    config.validate()
    splits = _split(config)
    plans: list[ImagePlan] = []
    draws: list[np.ndarray] = []
    for s in range(config.studies):
        study_rng = rng_for(config.seed, s, STREAM_STUDY)
        study_id = hex_id(config.seed, s, "study")
        density = str(_choice(study_rng, DENSITIES, config.density_weights))
        size = float(study_rng.uniform(0.0, 1.0))
        breasts = {}
        for lat in ("L", "R"):
            objects = _breast_objects(study_rng, config, study_id, lat)
            breasts[lat] = (objects, breast_birads(study_rng, objects))
        for v, (lat, view) in enumerate(VIEWS):
            objects, birads = breasts[lat]
            image_rng = rng_for(config.seed, s, v, STREAM_IMAGE)
            positive = any(o.kind == config.confounder_finding for o in objects)
            p_marker = 0.5 + config.confounder_rate / 2 if positive else 0.5 - config.confounder_rate / 2
            marker = bool(image_rng.random() < p_marker)
            encoding, u = _encoding(image_rng, config)
            draws.append(u)
            plans.append(
                ImagePlan(
                    seed=config.seed,
                    study_index=s,
                    view_index=v,
                    study_id=study_id,
                    series_id=hex_id(config.seed, s, v, "series"),
                    image_id=hex_id(config.seed, s, v, "image"),
                    laterality=lat,
                    view=view,
                    density=density,
                    breast_size=size,
                    objects=objects,
                    marker=marker,
                    split=splits[s],
                    breast_birads=birads,
                    encoding=encoding,
                )
            )
    return _ensure_each_encoding(plans, np.asarray(draws), config)


def _ensure_each_encoding(
    plans: list[ImagePlan], draws: np.ndarray, config: PhantomConfig
) -> list[ImagePlan]:
    """Make sure a dataset holds at least one JPEG 2000 and one MONOCHROME1 file when their rate is > 0
    (the image whose draw came closest is switched), so every decoding path is exercised."""
    rules = (
        (2, config.jpeg2000_rate, "transfer_syntax", "jpeg2000-lossless"),
        (0, config.monochrome1_rate, "photometric", "MONOCHROME1"),
    )
    for column, rate, attr, value in rules:
        if rate <= 0 or any(getattr(p.encoding, attr) == value for p in plans):
            continue
        i = int(np.argmin(draws[:, column]))
        plans[i] = replace(plans[i], encoding=replace(plans[i].encoding, **{attr: value}))
    return plans
