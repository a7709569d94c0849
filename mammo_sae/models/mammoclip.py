"""The Mammo-CLIP image encoder imported into timm: architecture table, key map, static padding.

The released encoder is lukemelas' ``efficientnet_pytorch`` EfficientNet (``_conv_stem``, ``_blocks.N``,
...), built for a 456x456 input: its convolutions use TensorFlow "same" padding computed ONCE for that
size, whatever the real input. timm's ``tf_efficientnet_*`` has the same layers under other names but
pads dynamically for the actual input, which differs on the stride-2 convolutions at 1520x912 and at
odd sizes. So: build timm's model, pin each convolution's padding to what the reference computes for its
``image_size`` (:func:`pin_static_padding`), and rename the checkpoint's keys with one map
(:func:`lukemelas_to_timm_keys`). ``tests/test_models_equivalence.py`` proves the result equal to the
reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from mammo_sae.core.errors import ModelError
from mammo_sae.models.checkpoints import check_state_dict, describe_keys, key_prefixes

ENCODER_PREFIX = "image_encoder."
# Keys the reference may carry that the feature extractor never uses: the 1-output classifier that
# ``EfficientNet.from_pretrained(..., num_classes=1)`` adds after pooling.
IGNORED_ENCODER_KEYS = frozenset({"_fc.weight", "_fc.bias"})
REFERENCE_BN_MOMENTUM = 0.01  # lukemelas: 1 - 0.99 in PyTorch's convention; only matters when training
REFERENCE_DROP_CONNECT = 0.2  # stochastic depth of the reference; only matters when training
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


@dataclass(frozen=True)
class MammoClipArch:
    """One released Mammo-CLIP image encoder and its timm twin."""

    kind: str  # the spec prefix, e.g. "mammoclip-b5"
    reference: str  # efficientnet_pytorch model name
    timm_name: str  # timm architecture with the same layers
    image_size: int  # the input size the reference's static padding was computed for
    stage_depths: tuple[int, ...]  # blocks per stage; the reference numbers blocks 0..sum-1
    num_features: int  # channels of the head output
    encoder_name: str  # config["model"]["image_encoder"]["name"] in the released checkpoint


ARCHS: dict[str, MammoClipArch] = {
    arch.kind: arch
    for arch in (
        MammoClipArch(
            "mammoclip-b5",
            "efficientnet-b5",
            "tf_efficientnet_b5",
            456,
            (3, 5, 5, 7, 7, 9, 3),
            2048,
            "tf_efficientnet_b5_ns-detect",
        ),
        MammoClipArch(
            "mammoclip-b2",
            "efficientnet-b2",
            "tf_efficientnet_b2",
            260,
            (2, 3, 3, 4, 4, 5, 2),
            1408,
            "tf_efficientnetv2-detect",
        ),
    )
}
DEFAULT_LAYER = "bn2"  # timm's head BatchNorm + SiLU: swish(bn1(conv_head(x))) in lukemelas' names

# Per-module renames. Stage-0 blocks have no expansion (timm: DepthwiseSeparableConv), the others do
# (timm: InvertedResidual), which shifts the BatchNorm numbering.
_STEM_AND_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_SEPARABLE_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _tensors_of(module: str) -> tuple[str, ...]:
    if "_bn" in module:
        return _BN_TENSORS
    return ("weight", "bias") if "_se_" in module else ("weight",)


def lukemelas_to_timm_keys(
    stage_depths: Sequence[int], separable_stages: Sequence[int] = (0,)
) -> dict[str, str]:
    """Every state-dict key of a lukemelas EfficientNet (no ``_fc``) -> its name in timm's EfficientNet.

    Blocks are numbered 0..sum(stage_depths)-1 in the reference and ``blocks.stage.index`` in timm;
    blocks of ``separable_stages`` (no expansion convolution) use timm's depthwise-separable names.
    """
    key_map: dict[str, str] = {}

    def add(ours: str, theirs: str) -> None:
        for tensor in _tensors_of(ours.rsplit(".", 1)[-1]):
            key_map[f"{ours}.{tensor}"] = f"{theirs}.{tensor}"

    for module in ("_conv_stem", "_bn0"):
        add(module, _STEM_AND_HEAD[module])
    flat = 0
    for stage, depth in enumerate(stage_depths):
        names = _SEPARABLE_BLOCK if stage in separable_stages else _INVERTED_BLOCK
        for index in range(depth):
            for ours, theirs in names.items():
                add(f"_blocks.{flat}.{ours}", f"blocks.{stage}.{index}.{theirs}")
            flat += 1
    for module in ("_conv_head", "_bn1"):
        add(module, _STEM_AND_HEAD[module])
    return key_map


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) for one axis of length ``size``: the reference's rule."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def static_pad_plan(model: nn.Module, image_size: int) -> dict[str, Pads]:
    """The pads the reference computes for a square ``image_size`` input, for every spatial convolution.

    Walks timm's EfficientNet in the reference's order: the stem, then each block's depthwise
    convolution at the size its block receives (the size shrinks by ceil(size / stride) after each).
    Pointwise and squeeze-excite convolutions have 1x1 kernels and never pad.
    """
    convs: list[tuple[str, nn.Conv2d]] = [("conv_stem", model.conv_stem)]
    for stage_index, stage in enumerate(model.blocks):
        for block_index, block in enumerate(stage):
            convs.append((f"blocks.{stage_index}.{block_index}.conv_dw", block.conv_dw))
    size = (image_size, image_size)
    plan: dict[str, Pads] = {}
    for name, conv in convs:
        axes = zip(size, conv.kernel_size, conv.stride, conv.dilation, strict=True)
        plan[name] = tuple(same_pads(*axis) for axis in axes)  # type: ignore[assignment]
        size = tuple(math.ceil(s / st) for s, st in zip(size, conv.stride, strict=True))
    return plan


class StaticPadConv2d(nn.Conv2d):
    """A convolution with fixed zero pads (before, after) per axis, whatever the input size.

    Symmetric pads use the convolution's own padding; asymmetric ones pad explicitly first.
    Parameter names stay ``weight``/``bias``, so state dicts are unchanged.
    """

    def __init__(self, conv: nn.Conv2d, pads: Pads) -> None:
        (top, bottom), (left, right) = pads
        symmetric = top == bottom and left == right
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=(top, left) if symmetric else 0,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            device="meta",
        )
        self.weight = conv.weight
        self.bias = conv.bias
        self.pads = pads
        self._explicit = None if symmetric else (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._explicit is not None:
            x = F.pad(x, self._explicit)
        return self._conv_forward(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, static_pads={self.pads}"


def pin_static_padding(model: nn.Module, image_size: int) -> dict[str, Pads]:
    """Give every convolution of a timm EfficientNet the reference's static pads for ``image_size``.

    Convolutions whose padding already equals the plan (timm pads stride-1 convolutions symmetrically)
    are kept; the others (timm's dynamic ``Conv2dSame`` among them) become :class:`StaticPadConv2d`.
    Returns the replaced convolutions and their pads.
    """
    replaced: dict[str, Pads] = {}
    for name, pads in static_pad_plan(model, image_size).items():
        conv = model.get_submodule(name)
        (top, bottom), (left, right) = pads
        already = (
            type(conv) is nn.Conv2d
            and top == bottom
            and left == right
            and tuple(conv.padding) == (top, left)
            and conv.padding_mode == "zeros"
        )
        if already or (isinstance(conv, StaticPadConv2d) and conv.pads == pads):
            continue
        if not isinstance(conv, nn.Conv2d):
            raise ModelError(f"cannot pin the padding of {name}: {type(conv).__name__} is not a Conv2d")
        parent_name, _, child = name.rpartition(".")
        setattr(
            model.get_submodule(parent_name) if parent_name else model, child, StaticPadConv2d(conv, pads)
        )
        replaced[name] = pads
    return replaced


def build_encoder(arch: MammoClipArch) -> nn.Module:
    """timm's twin of the reference encoder with random weights, static padding pinned, in eval mode."""
    model = timm.create_model(
        arch.timm_name,
        pretrained=False,
        num_classes=0,
        global_pool="",
        drop_path_rate=REFERENCE_DROP_CONNECT,
    )
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.eps == 1e-3, f"{arch.timm_name} BatchNorm eps {module.eps}, expected 1e-3"
            module.momentum = REFERENCE_BN_MOMENTUM
    pin_static_padding(model, arch.image_size)
    assert model.num_features == arch.num_features, (model.num_features, arch)
    return model.eval()


def encoder_state(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """The ``image_encoder.*`` tensors of a Mammo-CLIP file (prefix removed); ModelError if it has none."""
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        found = (
            f"top-level keys {describe_keys([str(k) for k in checkpoint])}"
            if isinstance(checkpoint, Mapping)
            else f"a {type(checkpoint).__name__}"
        )
        raise ModelError(
            f"{source} is not a Mammo-CLIP checkpoint: expected a dict with a 'model' state dict "
            f"(top-level keys model, optimizer, scheduler, config, epoch, train_loss, like "
            f"b5-model-best-epoch-7.tar), found {found}"
        )
    state = {str(k): v for k, v in checkpoint["model"].items()}
    if state and all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    encoder = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    if not encoder:
        raise ModelError(
            f"{source} has no '{ENCODER_PREFIX}*' tensors in its 'model' state dict (found prefixes "
            f"{', '.join(key_prefixes(list(state))) or 'none'}); expected a Mammo-CLIP pre-trained or "
            "downstream checkpoint"
        )
    return encoder


def configured_encoder(checkpoint: Any) -> str | None:
    """``config["model"]["image_encoder"]["name"]`` of a checkpoint, when it has one."""
    try:
        name = checkpoint["config"]["model"]["image_encoder"]["name"]
    except (KeyError, TypeError, IndexError):
        return None
    return name if isinstance(name, str) else None


def arch_for_encoder_name(name: str) -> MammoClipArch | None:
    return next((arch for arch in ARCHS.values() if arch.encoder_name == name), None)


def infer_arch(encoder: Mapping[str, torch.Tensor], source: str) -> MammoClipArch:
    """The architecture whose head width and block count fit a lukemelas encoder state dict."""
    head = encoder.get("_conv_head.weight")
    blocks = {int(k.split(".")[1]) for k in encoder if k.startswith("_blocks.") and k.split(".")[1].isdigit()}
    for arch in ARCHS.values():
        if head is not None and head.shape[0] == arch.num_features and len(blocks) == sum(arch.stage_depths):
            return arch
    width = "no _conv_head.weight" if head is None else f"{head.shape[0]} head channels"
    known = "; ".join(
        f"{a.kind}: {a.num_features} channels, {sum(a.stage_depths)} blocks" for a in ARCHS.values()
    )
    raise ModelError(
        f"{source}: the image encoder ({width}, {len(blocks)} blocks) is none of the known Mammo-CLIP "
        f"encoders ({known})"
    )


def load_encoder_weights(
    model: nn.Module, arch: MammoClipArch, encoder: Mapping[str, torch.Tensor], source: str
) -> None:
    """Strictly load a lukemelas encoder state dict into :func:`build_encoder`'s model.

    Every tensor must be used and every shape must match; ``num_batches_tracked`` may be absent (it only
    counts training steps) and the reference's unused ``_fc`` classifier is skipped.
    """
    key_map = lukemelas_to_timm_keys(arch.stage_depths)
    used = {k: v for k, v in encoder.items() if k not in IGNORED_ENCODER_KEYS}
    theirs_state = model.state_dict()
    expected = {ours: theirs_state[theirs] for ours, theirs in key_map.items()}
    optional = frozenset(k for k in key_map if k.endswith("num_batches_tracked"))
    other = [a for a in ARCHS.values() if a != arch]
    hint = f"Expected the image encoder of a Mammo-CLIP {arch.reference} checkpoint (spec {arch.kind}:PATH)."
    try:
        found = infer_arch(encoder, source)
    except ModelError:
        found = None
    if found is not None and found in other:
        hint += f" This file holds a {found.reference} encoder: use {found.kind}:PATH."
    check_state_dict(used, expected, f"{source} (image encoder)", optional=optional, hint=hint)
    renamed = {key_map[k]: v for k, v in used.items()}
    result = model.load_state_dict(renamed, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result.missing_keys
