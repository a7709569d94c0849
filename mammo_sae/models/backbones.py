"""Backbones by name: one factory over timm architectures and the released Mammo-CLIP encoders.

Spec strings::

    timm:NAME                     timm architecture, random weights (never downloaded)
    timm:NAME@osN                 ... built with output stride N (8 or 16: dilated last stages, a finer
                                  token grid at the same cost in parameters)
    timm:NAME:WEIGHTS_FILE        ... with weights from a local .safetensors or torch file
    mammoclip-b5:CHECKPOINT       Mammo-CLIP EfficientNet-B5 encoder from a released file
    mammoclip-b2:CHECKPOINT       Mammo-CLIP EfficientNet-B2 encoder

The spec is kept verbatim on the backbone (``backbone.spec``) with the sha256 of the weights file, so
what was read can be traced and stale artefacts detected.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

import timm
import torch
from torch import nn

from mammo_sae.core.errors import ModelError
from mammo_sae.core.hashing import sha256_file
from mammo_sae.models import mammoclip
from mammo_sae.models.checkpoints import (
    check_state_dict,
    existing_file,
    find_state_dict,
    read_torch_file,
    read_weights_file,
)
from mammo_sae.models.hooks import unknown_layer

SPEC_SYNTAX = (
    "timm:NAME[:WEIGHTS_FILE] (e.g. 'timm:efficientnet_b0', 'timm:resnet18:/w/resnet18.safetensors') "
    f"or {' / '.join(f'{kind}:CHECKPOINT' for kind in mammoclip.ARCHS)}"
)
RANDOM_INIT_SEED = 0  # random-init backbones are the same network on every call
PROBE_SIZE = 64  # input side of the small forward that finds a timm model's head-output layer


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed spec string."""

    kind: str  # "timm" or a Mammo-CLIP architecture ("mammoclip-b5", ...)
    name: str  # timm model name, or the Mammo-CLIP kind again
    path: str | None  # weights file as given, or None for random init

    @property
    def architecture(self) -> str:
        """The spec without its file: ``timm:NAME`` or ``mammoclip-b5``."""
        return f"timm:{self.name}" if self.kind == "timm" else self.kind

    @property
    def timm_name(self) -> str:
        """The timm model name, without an ``@osN`` suffix."""
        return self.name.partition("@")[0]

    @property
    def output_stride(self) -> int | None:
        """N of an ``@osN`` suffix, else None (the model's own stride)."""
        suffix = self.name.partition("@")[2]
        return int(suffix[2:]) if suffix else None


def parse_spec(spec: str) -> BackboneSpec:
    """Split a spec string into kind, model name and weights path; ModelError explaining the syntax."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"empty backbone spec; expected {SPEC_SYNTAX}")
    kind, sep, rest = spec.partition(":")
    if kind == "timm":
        name, _, path = rest.partition(":")
        if not name:
            raise ModelError(f"backbone spec {spec!r} names no timm model; expected {SPEC_SYNTAX}")
        suffix = name.partition("@")[2]
        if suffix and suffix not in ("os8", "os16"):
            raise ModelError(f"backbone spec {spec!r}: the only suffixes are @os8 and @os16 (output stride)")
        return BackboneSpec("timm", name, path or None)
    if kind in mammoclip.ARCHS:
        if not rest:
            raise ModelError(
                f"backbone spec {spec!r} needs the checkpoint file, e.g. "
                f"'{kind}:/models/b5-model-best-epoch-7.tar'; random Mammo-CLIP weights are "
                f"'timm:{mammoclip.ARCHS[kind].timm_name}'"
            )
        return BackboneSpec(kind, kind, rest)
    close = difflib.get_close_matches(kind, ["timm", *mammoclip.ARCHS], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close and sep else ""
    raise ModelError(f"cannot read backbone spec {spec!r}{hint}; expected {SPEC_SYNTAX}")


class Backbone(nn.Module):
    """A feature extractor: ``forward_features(x)`` is the (B, C, H, W) map of ``default_layer``.

    ``model`` is the timm module; layer names for hooks are relative to it (``blocks.6.2``, ``bn2``).
    Created in eval mode; ``backbone.to(memory_format=torch.channels_last)`` is supported.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        spec: str,
        weights_sha256: str | None,
        default_layer: str,
        num_features: int,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.weights_sha256 = weights_sha256
        self.default_layer = default_layer
        self.num_features = num_features
        self.in_chans = in_chans
        self.eval()

    @property
    def architecture(self) -> str:
        """The spec without its weights file (``timm:resnet18``, ``mammoclip-b5``)."""
        return parse_spec(self.spec).architecture

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def layer_names(self) -> list[str]:
        """Every name :func:`capture_layer` accepts, in the model's registration order."""
        return [name for name, _ in self.model.named_modules() if name]

    def get_layer(self, name: str) -> nn.Module:
        found = dict(self.model.named_modules()).get(name) if name else None
        if found is None:
            raise unknown_layer(name, self.layer_names())
        return found

    def feature_layers(self) -> list[str]:
        """One layer per resolution that timm reports as a feature stage, then the head output."""
        stages = [info["module"] for info in getattr(self.model, "feature_info", []) if "module" in info]
        names = set(self.layer_names())
        layers = [s for s in stages if s in names and s != self.default_layer]
        return [*layers, self.default_layer]

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, default_layer={self.default_layer!r}, num_features={self.num_features}"


def create_backbone(spec: str, in_chans: int = 3, *, trust_pickle: bool | None = None) -> Backbone:
    """Build the backbone a spec string names (see the module docstring), in eval mode.

    Nothing is ever downloaded: timm models are created with ``pretrained=False`` and weights come
    only from the named local file. ``trust_pickle`` allows a full unpickle of a torch file whose
    contents go beyond tensors and numpy arrays (see :mod:`mammo_sae.models.checkpoints`).
    """
    parsed = parse_spec(spec)
    backbone = build_architecture(spec, in_chans)
    if parsed.path is None:
        return backbone
    file = existing_file(parsed.path, "weights file" if parsed.kind == "timm" else "Mammo-CLIP checkpoint")
    if parsed.kind == "timm":
        state = find_state_dict(read_weights_file(file, trust_pickle=trust_pickle), str(file))
        load_timm_weights(backbone.model, state, str(file))
    else:
        arch = mammoclip.ARCHS[parsed.kind]
        checkpoint = read_torch_file(file, trust_pickle=trust_pickle)
        _check_configured_encoder(checkpoint, arch, str(file))
        encoder = mammoclip.encoder_state(checkpoint, str(file))
        mammoclip.load_encoder_weights(backbone.model, arch, encoder, str(file))
    backbone.weights_sha256 = sha256_file(file)
    return backbone


def build_architecture(spec: str, in_chans: int = 3) -> Backbone:
    """The spec's architecture with random weights; the weights file, if any, is not read.

    Random init is seeded with :data:`RANDOM_INIT_SEED` (the global RNG is left untouched), so a spec
    without weights names the same network every time and its features are reproducible.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return _build_architecture(parse_spec(spec), spec, in_chans)


def _build_architecture(parsed: BackboneSpec, spec: str, in_chans: int) -> Backbone:
    if parsed.kind == "timm":
        model = _create_timm(parsed.timm_name, in_chans, parsed.output_stride)
        return Backbone(
            model,
            spec=spec,
            weights_sha256=None,
            default_layer=find_default_layer(model, in_chans),
            num_features=int(model.num_features),
            in_chans=in_chans,
        )
    arch = mammoclip.ARCHS[parsed.kind]
    if in_chans != 3:
        raise ModelError(
            f"{arch.kind} takes 3-channel input (the grey image repeated); got in_chans={in_chans}"
        )
    return Backbone(
        mammoclip.build_encoder(arch),
        spec=spec,
        weights_sha256=None,
        default_layer=mammoclip.DEFAULT_LAYER,
        num_features=arch.num_features,
        in_chans=3,
    )


def _create_timm(name: str, in_chans: int, output_stride: int | None = None) -> nn.Module:
    if not timm.is_model(name):
        base = name.split(".", 1)[0]
        matches = timm.list_models(f"*{base}*")[:8] or difflib.get_close_matches(
            base, timm.list_models(), n=5
        )
        hint = f"; close names: {', '.join(matches)}" if matches else ""
        raise ModelError(f"timm has no model {name!r}{hint} (see timm.list_models('*pattern*'))")
    options = {} if output_stride is None else {"output_stride": output_stride}
    try:
        model = timm.create_model(
            name, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans, **options
        )
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        stride = f" with output stride {output_stride}" if output_stride else ""
        raise ModelError(f"timm could not build {name!r}{stride} as a feature backbone: {exc}") from exc
    if not hasattr(model, "forward_features"):
        raise ModelError(f"timm model {name!r} has no forward_features; it cannot serve as a backbone")
    return model.eval()


def load_timm_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load a timm state dict; the classifier's keys of a full model are dropped (no head here)."""
    expected = model.state_dict()
    classifiers = model.pretrained_cfg.get("classifier") if hasattr(model, "pretrained_cfg") else None
    prefixes = tuple(f"{c}." for c in ([classifiers] if isinstance(classifiers, str) else classifiers or []))
    if prefixes:
        state = {k: v for k, v in state.items() if k in expected or not k.startswith(prefixes)}
    name = (
        model.default_cfg.get("architecture", type(model).__name__) if hasattr(model, "default_cfg") else ""
    )
    check_state_dict(state, expected, source, hint=f"Expected a state dict of timm's {name!r}.")
    model.load_state_dict(state, strict=True)


def find_default_layer(model: nn.Module, in_chans: int = 3) -> str:
    """The layer whose output ``forward_features`` returns, found by a small eval-mode forward."""
    records: list[tuple[str, torch.Tensor]] = []
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: records.append((name, out)))
        for name, module in model.named_modules()
        if name
    ]
    was_training = model.training
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, in_chans, PROBE_SIZE, PROBE_SIZE, generator=generator).to(device)
    try:
        model.eval()
        with torch.no_grad():
            out = model.forward_features(x)
    except Exception as exc:
        raise ModelError(
            f"could not run {type(model).__name__} on a {PROBE_SIZE}x{PROBE_SIZE} probe: {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for name, output in reversed(records):  # the outermost module that returned the very tensor
        if output is out:
            return name
    for name, output in reversed(records):
        if isinstance(output, torch.Tensor) and output.shape == out.shape and torch.equal(output, out):
            return name
    raise ModelError(
        f"no single layer of {type(model).__name__} returns its forward_features output; name a layer "
        "explicitly when capturing"
    )


def _check_configured_encoder(checkpoint: object, arch: mammoclip.MammoClipArch, source: str) -> None:
    name = mammoclip.configured_encoder(checkpoint)
    if name is None or name == arch.encoder_name:
        return
    other = mammoclip.arch_for_encoder_name(name)
    fix = f"use {other.kind}:{source}" if other else f"mammo-sae reads {arch.encoder_name!r} with {arch.kind}"
    raise ModelError(f"{source} says its image encoder is {name!r}, not {arch.encoder_name!r}: {fix}")


__all__ = [
    "SPEC_SYNTAX",
    "Backbone",
    "BackboneSpec",
    "build_architecture",
    "create_backbone",
    "find_default_layer",
    "load_timm_weights",
    "parse_spec",
]
