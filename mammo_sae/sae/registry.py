"""The SAE architectures by name, each registered with its class and its config class (as SAELens does).

    register("relu", ReLUSAE, ReLUConfig)          # in the architecture's own module
    sae = create_sae("topk", 2048, 16384, k=64)    # keywords: that architecture's config fields only
    sae = sae_from_knobs("relu", 2048, 16384, train_config.to_dict())

Adding an architecture is one new module that defines the class and its config and calls ``register``,
plus its line in ``BUILTIN_MODULES`` (so that it is found by name without importing it first). The
trainer and the file functions ask the class, never the name. No torch at import time.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mammo_sae.sae.arch_config import SAEConfig
from mammo_sae.sae.errors import SAEError

if TYPE_CHECKING:
    from mammo_sae.sae.base import SparseAutoencoder

# the architectures that ship with the package, and the module that registers each
BUILTIN_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "relu": "mammo_sae.sae.relu",
        "topk": "mammo_sae.sae.topk",
        "batchtopk": "mammo_sae.sae.topk",
        "matryoshka": "mammo_sae.sae.matryoshka",
    }
)
BUILTIN_ARCHITECTURES: tuple[str, ...] = tuple(BUILTIN_MODULES)


@dataclass(frozen=True)
class Architecture:
    """One registered architecture: its name, SAE class and config class."""

    name: str
    cls: type[SparseAutoencoder]
    cfg_cls: type[SAEConfig]


_REGISTRY: dict[str, Architecture] = {}
ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(_REGISTRY)  # read-only view, in order


def register(arch: str, cls: type[SparseAutoencoder], cfg_cls: type[SAEConfig]) -> None:
    """Make ``cls`` (built from a ``cfg_cls`` instance) available by the name ``arch``."""
    if not isinstance(arch, str) or not arch:
        raise SAEError(f"an architecture name must be a non-empty string, got {arch!r}")
    if arch in _REGISTRY:
        raise SAEError(f"SAE architecture {arch!r} is already registered (by {_REGISTRY[arch].cls.__name__})")
    if not (isinstance(cfg_cls, type) and issubclass(cfg_cls, SAEConfig)):
        raise SAEError(f"the config class of {arch!r} must subclass SAEConfig, got {cfg_cls!r}")
    if getattr(cls, "architecture", None) != arch:
        raise SAEError(
            f"{getattr(cls, '__name__', cls)}.architecture is {getattr(cls, 'architecture', None)!r}; set it to "
            f"{arch!r}, the name it is registered under"
        )
    saelens = getattr(cls, "saelens_architecture", None)
    if getattr(cls, "default_for_saelens", False):
        taken = [
            a.name
            for a in _REGISTRY.values()
            if a.cls.default_for_saelens and a.cls.saelens_architecture == saelens
        ]
        if taken:
            raise SAEError(
                f"SAELens {saelens!r} files already load as {taken[0]!r}; {arch!r} can not be their default"
            )
    _REGISTRY[arch] = Architecture(arch, cls, cfg_cls)


def _import_builtins() -> None:
    for module in dict.fromkeys(BUILTIN_MODULES.values()):
        importlib.import_module(module)


def architecture_names() -> tuple[str, ...]:
    """Every architecture that can be built now (the built-in ones and any registered since)."""
    _import_builtins()
    return tuple(_REGISTRY)


def lookup(arch: str) -> Architecture:
    """The registration of ``arch``; SAEError naming the known ones (and a close match) otherwise."""
    if arch not in _REGISTRY and arch in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[arch])
    if arch not in _REGISTRY:
        known = architecture_names()
        close = difflib.get_close_matches(str(arch), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SAEError(
            f"unknown SAE architecture {arch!r}{hint}; known: {', '.join(known)} (a new one is added with "
            "mammo_sae.sae.register(name, cls, cfg_cls))"
        )
    return _REGISTRY[arch]


def saelens_default(saelens_architecture: str) -> str | None:
    """Our architecture that a SAELens folder of this name loads as when it has no metadata of ours."""
    _import_builtins()
    for entry in _REGISTRY.values():
        if entry.cls.default_for_saelens and entry.cls.saelens_architecture == saelens_architecture:
            return entry.name
    return None


def build_sae(arch: str, cfg: SAEConfig, *, dtype: Any = None, device: Any = None) -> SparseAutoencoder:
    """A freshly initialised ``arch`` SAE from its config (``dtype`` default float32)."""
    entry = lookup(arch)
    if not isinstance(cfg, entry.cfg_cls):
        raise SAEError(f"a {arch!r} SAE is built from a {entry.cfg_cls.__name__}, got {type(cfg).__name__}")
    options = {"device": device} | ({"dtype": dtype} if dtype is not None else {})
    return entry.cls(cfg, **options)


def create_sae(
    arch: str, d_in: int, d_sae: int, *, dtype: Any = None, device: Any = None, **hparams: Any
) -> SparseAutoencoder:
    """A freshly initialised SAE; ``hparams`` are the fields of the architecture's config (others are refused)."""
    entry = lookup(arch)
    return build_sae(arch, entry.cfg_cls.from_hparams(d_in, d_sae, hparams), dtype=dtype, device=device)


def sae_from_knobs(arch: str, d_in: int, d_sae: int, knobs: Mapping[str, Any]) -> SparseAutoencoder:
    """The SAE a training config asks for: each config field read from its knob (``knob_names``)."""
    entry = lookup(arch)
    return build_sae(arch, entry.cfg_cls.from_knobs(d_in, d_sae, knobs))
