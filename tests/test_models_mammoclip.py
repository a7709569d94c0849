"""The Mammo-CLIP encoder import: key map, static pads, released file format, strictness, safe loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from model_fixtures import (
    B2,
    B5,
    B5_STATIC_PADS,
    downstream_checkpoint,
    lukemelas_state,
    no_downloads,  # noqa: F401  (fixture)
    released_checkpoint,
    save,
)
from torch import nn

from mammo_sae.core.errors import ModelError
from mammo_sae.models import create_backbone, lukemelas_to_timm_keys
from mammo_sae.models.checkpoints import TRUST_ENV, read_torch_file
from mammo_sae.models.mammoclip import (
    StaticPadConv2d,
    build_encoder,
    same_pads,
    static_pad_plan,
)

pytestmark = pytest.mark.usefixtures("no_downloads")


@pytest.fixture(scope="module")
def b5_encoder() -> dict[str, torch.Tensor]:
    return lukemelas_state(B5, seed=3)


@pytest.fixture(scope="module")
def b5_file(tmp_path_factory: pytest.TempPathFactory, b5_encoder: dict[str, torch.Tensor]) -> Path:
    return save(
        released_checkpoint(b5_encoder), tmp_path_factory.mktemp("ckpt") / "b5-model-best-epoch-7.tar"
    )


@pytest.mark.parametrize("arch", [B5, B2], ids=["b5", "b2"])
def test_key_map_covers_every_reference_key_exactly_once(arch) -> None:
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    reference = efficientnet_pytorch.EfficientNet.from_name(
        arch.reference, image_size=arch.image_size, include_top=False
    ).state_dict()
    ours = build_encoder(arch).state_dict()
    key_map = lukemelas_to_timm_keys(arch.stage_depths)
    assert sorted(key_map) == sorted(reference)
    assert sorted(key_map.values()) == sorted(ours)  # a bijection: no timm tensor filled twice
    assert all(reference[k].shape == ours[v].shape for k, v in key_map.items())


def test_key_map_names_blocks_by_stage() -> None:
    key_map = lukemelas_to_timm_keys(B5.stage_depths)
    assert key_map["_conv_stem.weight"] == "conv_stem.weight"
    assert key_map["_bn0.running_var"] == "bn1.running_var"
    assert key_map["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"  # no expansion in stage 0
    assert key_map["_blocks.3._expand_conv.weight"] == "blocks.1.0.conv_pw.weight"
    assert key_map["_blocks.3._project_conv.weight"] == "blocks.1.0.conv_pwl.weight"
    assert key_map["_blocks.3._bn2.bias"] == "blocks.1.0.bn3.bias"
    assert key_map["_blocks.38._se_expand.bias"] == "blocks.6.2.se.conv_expand.bias"
    assert key_map["_conv_head.weight"] == "conv_head.weight"
    assert key_map["_bn1.weight"] == "bn2.weight"
    assert not any(k.startswith("_fc") for k in key_map)


def test_static_pads_derived_for_456_equal_the_measured_b5_pads() -> None:
    model = build_encoder(B5)
    pinned = {name: m.pads for name, m in model.named_modules() if isinstance(m, StaticPadConv2d)}
    assert pinned == {name: (pad, pad) for name, pad in B5_STATIC_PADS.items()}
    plan = static_pad_plan(model, B5.image_size)
    stride_one = [pads for name, pads in plan.items() if name not in B5_STATIC_PADS]
    assert all(top == bottom and left == right for (top, bottom), (left, right) in stride_one)
    assert same_pads(456, 3, 2) == (0, 1) and same_pads(57, 3, 2) == (1, 1) and same_pads(29, 5, 2) == (2, 2)


def test_b2_pads_come_from_its_own_image_size() -> None:
    model = build_encoder(B2)
    pinned = {name: m.pads[0] for name, m in model.named_modules() if isinstance(m, StaticPadConv2d)}
    # 260 -> 130 -> 65 -> 33 -> 17: the stage-2 convolution sees 65, an odd size, so pads (2, 2)
    assert pinned == {
        "conv_stem": (0, 1),
        "blocks.1.0.conv_dw": (0, 1),
        "blocks.2.0.conv_dw": (2, 2),
        "blocks.3.0.conv_dw": (1, 1),
        "blocks.5.0.conv_dw": (2, 2),
    }
    assert model.num_features == 1408


def test_released_format_loads_with_its_text_keys_and_config(b5_file: Path, b5_encoder) -> None:
    backbone = create_backbone(f"mammoclip-b5:{b5_file}")
    assert backbone.spec == f"mammoclip-b5:{b5_file}"
    assert len(backbone.weights_sha256) == 64
    assert backbone.num_features == 2048 and backbone.default_layer == "bn2"
    assert not backbone.training
    state = backbone.model.state_dict()
    assert torch.equal(state["blocks.4.2.conv_dw.weight"], b5_encoder["_blocks.22._depthwise_conv.weight"])
    assert torch.equal(state["bn2.running_var"], b5_encoder["_bn1.running_var"])
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 for m in bns)
    fmap = backbone.forward_features(torch.randn(1, 3, 96, 64))
    assert fmap.shape == (1, 2048, 3, 2)


def test_b5_output_grid_at_the_mammo_clip_frame_size(b5_file: Path) -> None:
    backbone = create_backbone(f"mammoclip-b5:{b5_file}").to("meta")
    with torch.inference_mode():
        fmap = backbone.forward_features(torch.empty(1, 3, 1520, 912, device="meta"))
    assert fmap.shape == (1, 2048, 48, 29)  # the paper's 1392 tokens


def test_missing_num_batches_tracked_and_an_unused_fc_are_tolerated(tmp_path: Path, b5_encoder) -> None:
    encoder = {k: v for k, v in b5_encoder.items() if not k.endswith("num_batches_tracked")}
    encoder["_fc.weight"], encoder["_fc.bias"] = torch.zeros(1, 2048), torch.zeros(1)
    file = save(released_checkpoint(encoder), tmp_path / "b5.tar")
    create_backbone(f"mammoclip-b5:{file}")


def test_a_checkpoint_missing_the_head_conv_names_it(tmp_path: Path, b5_encoder) -> None:
    encoder = {k: v for k, v in b5_encoder.items() if k != "_conv_head.weight"}
    file = save(released_checkpoint(encoder), tmp_path / "b5.tar")
    with pytest.raises(ModelError, match=r"1 missing keys: '_conv_head.weight'") as info:
        create_backbone(f"mammoclip-b5:{file}")
    assert "efficientnet-b5" in str(info.value)


def test_a_wrong_shape_is_named_with_both_shapes(tmp_path: Path, b5_encoder) -> None:
    encoder = dict(b5_encoder)
    encoder["_blocks.7._se_reduce.weight"] = torch.zeros(3, 240, 1, 1)
    file = save(released_checkpoint(encoder), tmp_path / "b5.tar")
    with pytest.raises(ModelError, match=r"_blocks.7._se_reduce.weight: file \(3, 240, 1, 1\) vs model"):
        create_backbone(f"mammoclip-b5:{file}")


def test_unexpected_encoder_keys_are_counted(tmp_path: Path, b5_encoder) -> None:
    encoder = dict(b5_encoder)
    for i in range(7):
        encoder[f"_extra.{i}.weight"] = torch.zeros(1)
    file = save(released_checkpoint(encoder), tmp_path / "b5.tar")
    with pytest.raises(ModelError, match=r"7 unexpected keys: '_extra.0.weight'.*\(\+2 more\)"):
        create_backbone(f"mammoclip-b5:{file}")


def test_a_resnet_state_dict_is_not_a_mammo_clip_checkpoint(tmp_path: Path) -> None:
    import timm

    resnet = timm.create_model("resnet18", pretrained=False).state_dict()
    file = save(resnet, tmp_path / "resnet18.pth")
    with pytest.raises(ModelError, match=r"not a Mammo-CLIP checkpoint.*'model' state dict.*conv1.weight"):
        create_backbone(f"mammoclip-b5:{file}")
    file = save({"model": {f"module.{k}": v for k, v in resnet.items()}}, tmp_path / "wrapped.pth")
    with pytest.raises(ModelError, match=r"no 'image_encoder\.\*' tensors.*prefixes bn1, conv1, fc, layer1"):
        create_backbone(f"mammoclip-b5:{file}")


def test_a_b2_file_read_as_b5_says_which_spec_to_use(tmp_path: Path) -> None:
    b2 = released_checkpoint(lukemelas_state(B2, seed=1), B2)
    file = save(b2, tmp_path / "b2-model-best-epoch-10.tar")
    with pytest.raises(ModelError, match=r"tf_efficientnetv2-detect.*use mammoclip-b2:"):
        create_backbone(f"mammoclip-b5:{file}")
    del b2["config"]  # without the config, the shapes tell
    save(b2, file)
    with pytest.raises(ModelError, match=r"holds a efficientnet-b2 encoder: use mammoclip-b2:PATH"):
        create_backbone(f"mammoclip-b5:{file}")
    backbone = create_backbone(f"mammoclip-b2:{file}")
    assert backbone.num_features == 1408
    assert backbone.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 1408, 2, 2)


def test_a_downstream_file_also_serves_as_a_backbone(tmp_path: Path, b5_encoder) -> None:
    file = save(downstream_checkpoint(b5_encoder, 1), tmp_path / "mass" / "ft.pth")
    backbone = create_backbone(f"mammoclip-b5:{file}")
    assert torch.equal(backbone.model.state_dict()["conv_stem.weight"], b5_encoder["_conv_stem.weight"])


def test_missing_checkpoint_and_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist"):
        create_backbone(f"mammoclip-b5:{tmp_path / 'nope.tar'}")
    with pytest.raises(ModelError, match=r"is a folder"):
        create_backbone(f"mammoclip-b5:{tmp_path}")
    with pytest.raises(ModelError, match=r"needs the checkpoint file"):
        create_backbone("mammoclip-b5")
    with pytest.raises(ModelError, match=r"3-channel"):
        create_backbone(f"mammoclip-b5:{tmp_path / 'x.tar'}", in_chans=1)
    (tmp_path / "junk.tar").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match=r"not a readable torch.save file"):
        create_backbone(f"mammoclip-b5:{tmp_path / 'junk.tar'}")


class Payload:
    """A pickled object that would run code on load: the reason for weights-only reading."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_files_needing_arbitrary_globals_are_refused_unless_trusted(tmp_path: Path, monkeypatch) -> None:
    file = tmp_path / "evil.tar"
    torch.save({"model": {"x": torch.zeros(1)}, "extra": Payload()}, file)
    with pytest.raises(ModelError, match=r"builtins.print.*trust_pickle=True"):
        read_torch_file(file)
    assert read_torch_file(file, trust_pickle=True)["extra"] is None  # print(...) returned None
    monkeypatch.setenv(TRUST_ENV, "1")
    assert read_torch_file(file)["extra"] is None


def test_numpy_arrays_load_without_trusting_the_pickle(tmp_path: Path, b5_encoder) -> None:
    file = save(downstream_checkpoint(b5_encoder, 4), tmp_path / "density.pth")
    loaded = read_torch_file(file)
    assert loaded["predictions"].shape == (12, 4) and float(loaded["accuracy"]) == pytest.approx(0.77)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_legacy_non_zip_files_load_weights_only(tmp_path: Path) -> None:
    file = tmp_path / "legacy.pth"
    torch.save({"a": torch.ones(2)}, file, _use_new_zipfile_serialization=False)
    assert torch.equal(read_torch_file(file)["a"], torch.ones(2))
    file.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelError, match=r"trust_pickle"):
        read_torch_file(file)
