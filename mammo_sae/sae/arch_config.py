"""SAEConfig: the frozen config every SAE architecture is built from (sizes, seed, hyper-parameters).

Each architecture subclasses it with its own hyper-parameters as fields with defaults, checked in
``__post_init__``; ``registry.register(arch, cls, cfg_cls)`` ties the config class to the SAE class. The
config knows how to read itself from the training knobs (``from_knobs``), from an ``hparams`` record of
``cfg.json`` (``from_hparams``) and what a SAELens file without our metadata implies (``complete_from_saelens``).
No torch here: the training command's config imports this module.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from mammo_sae.sae.errors import SAEError

SIZE_FIELDS = ("d_in", "d_sae")


def check_positive(name: str, value: Any, *, integer: bool) -> None:
    """Refuse ``value`` unless it is a positive int (``integer``) or a finite number >= 0."""
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, int | float)
    if not ok or not (value > 0 if integer else math.isfinite(value) and value >= 0):
        kind = "a positive integer" if integer else "a finite number >= 0"
        raise SAEError(f"{name} must be {kind}, got {value!r}")


@dataclass(frozen=True)
class SAEConfig:
    """``d_in`` features in, ``d_sae`` latents, ``seed`` of the initial weights; subclasses add fields."""

    d_in: int
    d_sae: int
    seed: int = 0

    # training knob (a TrainConfig field) that each hyper-parameter is read from, where the names differ
    knob_names: ClassVar[Mapping[str, str]] = {}

    def __post_init__(self) -> None:
        for name in SIZE_FIELDS:
            check_positive(name, getattr(self, name), integer=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SAEError(f"seed must be an integer >= 0, got {self.seed!r}")

    def _set(self, name: str, value: Any) -> None:
        """Resolve a derived default in ``__post_init__`` (the dataclass is frozen)."""
        object.__setattr__(self, name, value)

    @classmethod
    def hparam_names(cls) -> tuple[str, ...]:
        """The hyper-parameters (every field but the sizes), the architecture's own first, seed last."""
        names = [field.name for field in dataclasses.fields(cls) if field.name not in SIZE_FIELDS]
        names.remove("seed")
        return (*names, "seed")

    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as plain JSON values (what ``cfg.json`` records to rebuild the SAE)."""
        return {name: getattr(self, name) for name in self.hparam_names()}

    @classmethod
    def from_hparams(cls, d_in: int, d_sae: int, hparams: Mapping[str, Any]) -> Self:
        """The config of these sizes and hyper-parameters; a name the architecture lacks is refused."""
        unknown = sorted(set(hparams) - set(cls.hparam_names()))
        if unknown:
            raise SAEError(
                f"{cls.__name__} has no hyper-parameter {', '.join(map(repr, unknown))}; it takes "
                f"{', '.join(cls.hparam_names())}"
            )
        return cls(d_in=d_in, d_sae=d_sae, **dict(hparams))

    @classmethod
    def from_knobs(cls, d_in: int, d_sae: int, knobs: Mapping[str, Any]) -> Self:
        """The config the training knobs ask for (a knob the architecture does not use is ignored)."""
        values = {}
        for name in cls.hparam_names():
            knob = cls.knob_names.get(name, name)
            if knob in knobs:
                values[name] = knobs[knob]
        return cls(d_in=d_in, d_sae=d_sae, **values)

    @classmethod
    def complete_from_saelens(
        cls, hparams: dict[str, Any], cfg: Mapping[str, Any], d_sae: int
    ) -> dict[str, Any]:
        """Fill in what a SAELens ``cfg.json`` without our metadata implies (nothing, by default)."""
        return hparams
