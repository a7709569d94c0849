"""Backbones by spec string, no downloads, strict timm weights, layer names and hooks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import timm
import torch
from model_fixtures import (
    B2,
    lukemelas_state,
    no_downloads,  # noqa: F401  (fixture)
    released_checkpoint,
    save,
)
from safetensors.torch import save_file

from mammo_sae.core.errors import ModelError
from mammo_sae.models import (
    Backbone,
    capture_layer,
    create_backbone,
    feature_layers,
    layer_names,
    parse_spec,
)

pytestmark = pytest.mark.usefixtures("no_downloads")


@pytest.fixture(scope="module")
def b2(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    file = save(
        released_checkpoint(lukemelas_state(B2, seed=5), B2), tmp_path_factory.mktemp("b2") / "b2.tar"
    )
    return create_backbone(f"mammoclip-b2:{file}")


def test_timm_backbones_are_random_init_in_eval_mode_without_downloads(no_downloads) -> None:  # noqa: F811
    backbone = create_backbone("timm:resnet18")
    assert isinstance(backbone, Backbone) and not backbone.training
    assert backbone.spec == "timm:resnet18" and backbone.weights_sha256 is None
    assert backbone.num_features == 512 and backbone.default_layer == "layer4"
    assert backbone.architecture == "timm:resnet18"
    assert no_downloads and all(call["pretrained"] is False for call in no_downloads)
    fmap = backbone.forward_features(torch.randn(2, 3, 64, 96))
    assert fmap.shape == (2, 512, 2, 3)


def test_efficientnet_default_layer_is_the_activated_head_batchnorm() -> None:
    backbone = create_backbone("timm:efficientnet_b0", in_chans=1)
    assert backbone.default_layer == "bn2" and backbone.num_features == 1280 and backbone.in_chans == 1
    x = torch.randn(1, 1, 96, 64)
    with torch.no_grad():
        assert torch.equal(capture_layer(backbone, backbone.default_layer, x), backbone.forward_features(x))


def test_spec_syntax_errors_explain_the_syntax() -> None:
    for bad in ("", "resnet18", "timm:", "timm", "mammoclip-b7:/x.tar", "tim:resnet18"):
        with pytest.raises(
            ModelError, match=r"timm:NAME\[:WEIGHTS_FILE\]|needs the checkpoint|names no timm"
        ):
            create_backbone(bad)
    with pytest.raises(ModelError, match=r"did you mean 'timm'"):
        parse_spec("tim:resnet18")
    assert parse_spec("timm:resnet18:/w/a:b.pth").path == "/w/a:b.pth"
    assert parse_spec("mammoclip-b5:rel/b5.tar").architecture == "mammoclip-b5"


def test_unknown_timm_model_suggests_names() -> None:
    with pytest.raises(ModelError, match=r"timm has no model 'resnet181'.*resnet18"):
        create_backbone("timm:resnet181")
    with pytest.raises(ModelError, match=r"efficientnet_b5.*timm.list_models"):
        create_backbone("timm:efficientnet-b5")


def test_timm_weights_from_safetensors_and_torch_files(tmp_path: Path) -> None:
    source = timm.create_model("resnet18", pretrained=False)  # a full model: its fc is dropped on load
    state = source.state_dict()
    save_file(state, tmp_path / "r18.safetensors")
    torch.save({"state_dict": state}, tmp_path / "r18.pth")
    for name in ("r18.safetensors", "r18.pth"):
        spec = f"timm:resnet18:{tmp_path / name}"
        backbone = create_backbone(spec)
        assert backbone.spec == spec and len(backbone.weights_sha256) == 64
        assert torch.equal(
            backbone.model.state_dict()["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"]
        )


def test_timm_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    state = timm.create_model("resnet34", pretrained=False, num_classes=0).state_dict()
    save_file(state, tmp_path / "r34.safetensors")
    with pytest.raises(ModelError, match=r"96 unexpected keys: 'layer1.2.*timm's 'resnet18'"):
        create_backbone(f"timm:resnet18:{tmp_path / 'r34.safetensors'}")
    with pytest.raises(ModelError, match=r"does not exist"):
        create_backbone(f"timm:resnet18:{tmp_path / 'missing.safetensors'}")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ModelError, match=r"holds no state dict"):
        create_backbone(f"timm:resnet18:{tmp_path / 'list.pth'}")


def test_layer_names_and_capture(b2: Backbone) -> None:
    names = b2.layer_names()
    assert names == layer_names(b2)
    assert {"conv_stem", "blocks.6.1", "blocks.3.0.conv_dw", "conv_head", "bn2"} <= set(names)
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        assert torch.equal(capture_layer(b2, "bn2", x), b2.forward_features(x))
        stage = capture_layer(b2, "blocks.4", x)
    assert stage.shape == (1, 120, 8, 6)
    assert feature_layers(b2) == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "bn2"]


def test_unknown_layer_lists_close_matches_and_the_count(b2: Backbone) -> None:
    with pytest.raises(
        ModelError, match=r"unknown layer 'blocks.6.5'; did you mean 'blocks.6.1'.*named layers"
    ):
        capture_layer(b2, "blocks.6.5", torch.randn(1, 3, 32, 32))
    with pytest.raises(ModelError, match=rf"{len(b2.layer_names())} named layers"):
        capture_layer(b2, "layer39", torch.randn(1, 3, 32, 32))


def test_hooks_are_removed_after_capture_and_after_errors(b2: Backbone) -> None:
    target = b2.get_layer("blocks.2")
    with torch.no_grad():
        capture_layer(b2, "blocks.2", torch.randn(1, 3, 64, 64))
        assert not target._forward_hooks
        with pytest.raises(RuntimeError):
            capture_layer(b2, "blocks.2", torch.randn(1, 5, 64, 64))  # wrong channel count fails in the stem
    assert not target._forward_hooks


def test_capture_works_on_plain_modules() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(capture_layer(net, "1", x), torch.relu(net[0](x)))
    with pytest.raises(ModelError, match=r"unknown layer '3'"):
        capture_layer(net, "3", x)


def test_channels_last_gives_the_same_features(b2: Backbone) -> None:
    x = torch.randn(1, 3, 131, 97)
    with torch.no_grad():
        plain = b2.forward_features(x)
        fast = copy.deepcopy(b2).to(memory_format=torch.channels_last)
        out = fast.forward_features(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, plain, rtol=1e-4, atol=1e-5)


def test_meta_device_copy_gives_shapes_without_weights(b2: Backbone) -> None:
    """What feature extraction does to size its store: a weightless copy on the meta device."""
    ghost = copy.deepcopy(b2).to("meta")
    with torch.inference_mode():
        assert ghost.forward_features(torch.empty(1, 3, 1520, 912, device="meta")).shape == (1, 1408, 48, 29)
        assert capture_layer(ghost, "blocks.2", torch.empty(1, 3, 1520, 912, device="meta")).shape[1] == 48


def test_random_init_is_the_same_network_every_time_and_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = create_backbone("timm:resnet18"), create_backbone("timm:resnet18")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_output_stride_suffix_gives_a_finer_token_grid() -> None:
    coarse = create_backbone("timm:resnet10t")
    fine = create_backbone("timm:resnet10t@os16")
    x = torch.zeros(1, 3, 128, 96)
    assert tuple(coarse.forward_features(x).shape[2:]) == (4, 3)
    assert tuple(fine.forward_features(x).shape[2:]) == (8, 6)
    assert fine.architecture == "timm:resnet10t@os16" and fine.num_features == coarse.num_features
    with pytest.raises(ModelError, match="@os8 and @os16"):
        create_backbone("timm:resnet10t@os4")
    with pytest.raises(ModelError, match="output stride 16"):
        create_backbone("timm:lcnet_050@os16")
