"""The imported Mammo-CLIP encoder computes what the reference (efficientnet_pytorch 0.7.1) computes.

The reference is built as Mammo-CLIP builds it (static "same" padding for 456x456), given random
weights and random BatchNorm statistics, saved in the released checkpoint layout, read back with
``create_backbone("mammoclip-b5:...")`` and compared on the head feature map
``swish(bn1(conv_head(x)))`` = the reference's ``extract_features``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from model_fixtures import (
    B5,
    B5_STATIC_PADS,
    no_downloads,  # noqa: F401  (fixture)
    reference_encoder,
    relative_error,
    released_checkpoint,
    save,
)
from timm.layers import Conv2dSame

from mammo_sae.models import Backbone, create_backbone, lukemelas_to_timm_keys
from mammo_sae.models.mammoclip import StaticPadConv2d, same_pads

pytestmark = pytest.mark.usefixtures("no_downloads")

# An odd frame where every one of the five stride-2 convolutions sees an input size at which timm's
# dynamic padding differs from the pinned pads: heights and widths of the form 32 a + 7 reach the
# stem, stage 1 and stage 2 at odd sizes (pinned pads are asymmetric there) and stages 3 and 5 at even
# sizes (pinned pads are symmetric there).
ODD_FRAME = (295, 199)
FULL_FRAME = (1520, 912)


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    return reference_encoder(B5, seed=0)


@pytest.fixture(scope="module")
def ours(reference: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    file = save(released_checkpoint(state), tmp_path_factory.mktemp("eq") / "b5-model-best-epoch-7.tar")
    return create_backbone(f"mammoclip-b5:{file}")


def frame(size: tuple[int, int], seed: int = 7) -> torch.Tensor:
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))


def test_odd_frame_reaches_every_pinned_convolution_at_a_size_where_dynamic_padding_differs(ours) -> None:
    seen: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_module: torch.nn.Module, args: tuple) -> None:
            seen.setdefault(name, tuple(args[0].shape[-2:]))

        return hook

    handles = [
        ours.model.get_submodule(name).register_forward_pre_hook(record(name)) for name in B5_STATIC_PADS
    ]
    try:
        with torch.no_grad():
            ours.forward_features(frame(ODD_FRAME))
    finally:
        for handle in handles:
            handle.remove()
    for name, pinned in B5_STATIC_PADS.items():
        conv = ours.model.get_submodule(name)
        dynamic = [same_pads(size, conv.kernel_size[0], 2) for size in seen[name]]
        assert all(pads != pinned for pads in dynamic), (name, seen[name], dynamic, pinned)


def test_matches_the_reference_at_an_odd_size_fp32(reference, ours) -> None:
    x = frame(ODD_FRAME)
    with torch.no_grad():
        expected = reference.extract_features(x)
        got = ours.forward_features(x)
    assert got.shape == expected.shape == (1, 2048, 9, 6)
    assert relative_error(got, expected) <= 3e-5  # measured 1.4e-5


def test_the_random_reference_is_not_degenerate(reference) -> None:
    """Different inputs give clearly different features, so a small error means something."""
    with torch.no_grad():
        a, b = (reference.extract_features(frame(ODD_FRAME, seed)) for seed in (1, 2))
    assert relative_error(a, b) > 0.3
    assert float(a.std(dim=(2, 3)).mean()) > 0.1 * float(a.std())  # spatially varying, not a constant map


def test_matches_the_reference_in_fp64(reference, ours) -> None:
    x = frame(ODD_FRAME).double()
    with torch.no_grad():
        expected = reference.double().extract_features(x)
        got = ours.double().forward_features(x)
    reference.float(), ours.float()
    assert relative_error(got, expected) <= 1e-12


def test_timm_dynamic_padding_differs_and_each_of_the_five_pins_matters(reference, ours) -> None:
    x = frame(ODD_FRAME)
    with torch.no_grad():
        expected = reference.extract_features(x)
        dynamic = timm.create_model(
            "tf_efficientnet_b5", pretrained=False, num_classes=0, global_pool=""
        ).eval()
        key_map = lukemelas_to_timm_keys(B5.stage_depths)
        dynamic.load_state_dict({key_map[k]: v for k, v in reference.state_dict().items()})
        assert relative_error(dynamic.forward_features(x), expected) > 0.05
        for name in B5_STATIC_PADS:
            pinned = ours.model.get_submodule(name)
            assert isinstance(pinned, StaticPadConv2d)
            parent, _, child = name.rpartition(".")
            holder = ours.model.get_submodule(parent) if parent else ours.model
            free = Conv2dSame(
                pinned.in_channels,
                pinned.out_channels,
                pinned.kernel_size,
                stride=pinned.stride,
                groups=pinned.groups,
                bias=False,
            )
            free.weight = pinned.weight
            setattr(holder, child, free)
            try:
                error = relative_error(ours.forward_features(x), expected)
            finally:
                setattr(holder, child, pinned)
            assert error > 1e-3, f"unpinning {name} changed nothing at {ODD_FRAME}"


@pytest.mark.slow
def test_matches_the_reference_at_the_mammo_clip_frame_size(reference, ours) -> None:
    x = frame(FULL_FRAME)
    with torch.no_grad():
        expected = reference.extract_features(x)
        got = ours.forward_features(x)
    assert got.shape == expected.shape == (1, 2048, 48, 29)
    error = relative_error(got, expected)
    print(f"B5 1520x912 fp32 relative error {error:.2e}")
    assert error <= 1e-4


def test_checkpoint_round_trip_keeps_the_reference_state(ours, reference, tmp_path: Path) -> None:
    key_map = lukemelas_to_timm_keys(B5.stage_depths)
    theirs = ours.model.state_dict()
    assert all(torch.equal(v, theirs[key_map[k]]) for k, v in reference.state_dict().items())
