"""The phantom generator's settings (one frozen dataclass, recorded whole in the manifest) and its errors."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, fields, replace

from mammo_sae.core.config_cli import REQUIRED, comma_floats, flag_name, knob, nested
from mammo_sae.core.errors import MammoSaeError

GENERATOR_NAME = "mammo-sae phantom"
#: Bump whenever the pixels (or the labels) that a given config produces change.
GENERATOR_VERSION = "1.0.0"

DEFAULT_SIZE = (1280, 1024)
MIN_SIDE, MAX_SIDE = 128, 4096
CONFOUNDER_FINDINGS = ("calcification", "mass")


class PhantomError(MammoSaeError):
    """The phantom generator was asked for something it cannot do."""


class PhantomConfigError(PhantomError, ValueError):
    """A generator setting is out of range; the message says which values are allowed."""


class OutputNotEmptyError(PhantomError):
    """The output folder holds files that are not a previous phantom dataset."""


@dataclass(frozen=True)
class PhantomConfig:
    """Every knob of the generator. Rates are probabilities per breast unless said otherwise."""

    studies: int = knob(50, "number of studies (4 views each)")
    seed: int = knob(0, "random seed (>= 0); same seed, same pixels")
    height: int = DEFAULT_SIZE[0]  # set on the command line as --size HxW (PhantomRunConfig)
    width: int = DEFAULT_SIZE[1]
    mass_rate: float = knob(0.25, "P(a breast has a mass)")
    calcification_rate: float = knob(0.2, "P(a breast has a suspicious calcification cluster)")
    co_located_rate: float = knob(
        0.3, "P(the calcifications lie inside the mass | a breast has both): one finding row, two categories"
    )
    benign_rate: float = knob(
        0.4, "P(a breast has a benign bright structure: coarse or vascular calcification, not a finding)"
    )
    confounder_rate: float = knob(
        0.0, "marker/label correlation R: P(marker | positive) = 0.5 + R/2, P(marker | negative) = 0.5 - R/2"
    )
    confounder_finding: str = knob(
        "calcification", "the finding the burned-in marker correlates with", choices=CONFOUNDER_FINDINGS
    )
    density_weights: tuple[float, float, float, float] = knob(
        (0.15, 0.35, 0.35, 0.15),
        "relative frequency of the density classes A, B, C, D (per patient)",
        parse=comma_floats(4),
        metavar="A,B,C,D",
    )
    test_fraction: float = knob(
        0.2, "fraction of studies in the test split (1 = a held-out set of test studies only)"
    )
    jpeg2000_rate: float = knob(0.25, "share of JPEG 2000 lossless files (at least one if > 0)")
    monochrome1_rate: float = knob(0.25, "share of MONOCHROME1 files (at least one if > 0)")
    sigmoid_rate: float = knob(0.2, "share of files with VOILUTFunction SIGMOID (at least one if > 0)")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["density_weights"] = list(self.density_weights)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> PhantomConfig:
        """Rebuild a config from a manifest's "parameters" (unknown keys are refused)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PhantomConfigError(f"unknown phantom parameters {unknown}; known: {sorted(known)}")
        kwargs = dict(values)
        if "density_weights" in kwargs:
            kwargs["density_weights"] = tuple(float(v) for v in kwargs["density_weights"])  # type: ignore[union-attr]
        return cls(**kwargs)  # type: ignore[arg-type]

    def validate(self) -> PhantomConfig:
        """Raise PhantomConfigError naming the bad value and what to use instead; return self."""
        if not isinstance(self.studies, int) or self.studies < 1:
            raise PhantomConfigError(f"studies must be an integer >= 1, got {self.studies!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise PhantomConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for side, value in (("height", self.height), ("width", self.width)):
            if not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
                raise PhantomConfigError(
                    f"{side} must be an integer in [{MIN_SIDE}, {MAX_SIDE}] pixels, got {value!r}; "
                    f"e.g. --size {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}"
                )
        if not 0.9 <= self.height / self.width <= 2.0:
            raise PhantomConfigError(
                f"height/width = {self.height / self.width:.2f} does not look like a mammogram; "
                "use a portrait size with height/width in [0.9, 2.0], e.g. 1280x1024"
            )
        for name in (
            "mass_rate",
            "calcification_rate",
            "co_located_rate",
            "benign_rate",
            "confounder_rate",
            "jpeg2000_rate",
            "monochrome1_rate",
            "sigmoid_rate",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise PhantomConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise PhantomConfigError(f"test_fraction must be in [0, 1], got {self.test_fraction!r}")
        if self.confounder_finding not in CONFOUNDER_FINDINGS:
            raise PhantomConfigError(
                f"confounder_finding must be one of {CONFOUNDER_FINDINGS}, got {self.confounder_finding!r}"
            )
        weights = self.density_weights
        if len(weights) != 4 or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise PhantomConfigError(
                f"density_weights must be 4 non-negative numbers (A, B, C, D) with a positive sum, got {weights!r}"
            )
        return self


def parse_size(text: str) -> tuple[int, int]:
    """Parse "HxW" (e.g. "1280x1024") into (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise PhantomConfigError(f"size must look like HxW, e.g. 1280x1024; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def size_flag(text: str) -> tuple[int, int]:
    """The ``--size HxW`` parser (argparse-friendly errors)."""
    try:
        return parse_size(text)
    except PhantomConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


size_flag.format_value = lambda size: f"{size[0]}x{size[1]}"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PhantomRunConfig:
    """Every knob of `python -m mammo_sae.phantom`: where to write, the generator's settings (``--size``
    sets their height and width) and how to run."""

    out: str = knob(REQUIRED, "output folder (created; a previous phantom dataset is replaced)")
    size: tuple[int, int] = knob(
        DEFAULT_SIZE, "image size in pixels, height x width", parse=size_flag, metavar="HxW"
    )
    generator: PhantomConfig = nested(PhantomConfig)  # noqa: RUF009 (a field(default_factory=...))
    workers: int = knob(0, "rendering processes (0 = one per CPU core)")
    overwrite: bool = knob(False, "write into a non-empty folder that is not a phantom dataset")
    progress: bool = knob(True, "show a progress bar")

    def __post_init__(self) -> None:
        # --size is the generator's height and width: one source, whatever the generator object says
        sized = replace(self.generator, height=self.size[0], width=self.size[1])
        object.__setattr__(self, "generator", sized)

    def validate(self) -> PhantomRunConfig:
        self.generator.validate()
        if self.workers < 0:
            raise PhantomConfigError(
                f"{flag_name('workers')} must be >= 0 (0 = one per CPU core), got {self.workers}"
            )
        return self
