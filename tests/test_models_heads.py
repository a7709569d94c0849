"""Classifiers: the forward split, Mammo-CLIP downstream files, the project's safetensors format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_fixtures import (
    B2,
    B5,
    downstream_checkpoint,
    lukemelas_state,
    no_downloads,  # noqa: F401  (fixture)
    reference_encoder,
    relative_error,
    save,
)
from safetensors import safe_open
from safetensors.torch import save_file

from mammo_sae.core.errors import ModelError
from mammo_sae.models import (
    Classifier,
    capture_layer,
    create_backbone,
    load_classifier,
    save_classifier,
    task_from_path,
)

pytestmark = pytest.mark.usefixtures("no_downloads")


@pytest.fixture(scope="module")
def b2_encoder() -> dict[str, torch.Tensor]:
    return lukemelas_state(B2, seed=11)


@pytest.fixture(scope="module")
def small() -> Classifier:
    backbone = create_backbone("timm:efficientnet_b0")
    return Classifier.create(backbone, {"mass": 1, "calcification": 1, "density": 4})


def test_create_builds_binary_and_multiclass_heads(small: Classifier) -> None:
    assert small.tasks == ("mass", "calcification", "density")
    assert small.task_kind("mass") == "binary" and small.task_kind("density") == "multiclass"
    assert small.head("density").weight.shape == (4, 1280)
    assert small.class_names["density"] == ("A", "B", "C", "D")
    assert not small.training
    with pytest.raises(ModelError, match=r"no head for task 'birads'"):
        small.head("birads")
    with pytest.raises(ModelError, match=r"letters, digits"):
        Classifier.create(small.backbone, {"bad.name": 1})
    assert Classifier.create(small.backbone, ["mass", "density"]).head("density").out_features == 4


def test_forward_is_head_of_features_and_head_is_linear_on_the_mean(small: Classifier) -> None:
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        whole = small(x)
        fmap = small.forward_features(x)
        split = small.forward_head(fmap)
        for task in small.tasks:
            assert torch.equal(whole[task], split[task])
            head = small.head(task)
            manual = fmap.mean(dim=(2, 3)) @ head.weight.T + head.bias
            assert torch.allclose(split[task], manual, atol=1e-5)
        assert small.pool(fmap).shape == (2, 1280)
        probabilities = small.probabilities(split)
    assert torch.allclose(probabilities["density"].sum(-1), torch.ones(2))
    assert torch.equal(probabilities["mass"], torch.sigmoid(split["mass"]))


def test_dropout_is_inactive_in_eval_and_active_in_train(small: Classifier) -> None:
    fmap = torch.randn(4, 1280, 3, 2)
    with torch.no_grad():
        assert torch.equal(small.forward_head(fmap)["mass"], small.forward_head(fmap)["mass"])
        small.train()
        try:
            assert small.dropout.p == 0.4
            assert not torch.equal(small.forward_head(fmap)["density"], small.forward_head(fmap)["density"])
        finally:
            small.eval()


def test_capture_on_a_classifier_reaches_backbone_layers_and_heads(small: Classifier) -> None:
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(capture_layer(small, "bn2", x), small.forward_features(x))
        assert torch.equal(capture_layer(small, "heads.density", x), small(x)["density"])
    with pytest.raises(ModelError, match=r"unknown layer 'heads.birads'"):
        capture_layer(small, "heads.birads", x)


def test_downstream_file_loads_and_predicts_like_the_reference(tmp_path: Path) -> None:
    reference = reference_encoder(B5, seed=4)
    checkpoint = downstream_checkpoint({k: v.clone() for k, v in reference.state_dict().items()}, 1)
    path = (
        "Classifier/fine_tune/mass/upmc_breast_clip_det_b5_period_n_ft_seed_10_fold0_best_aucroc_ver084.pth"
    )
    file = save(checkpoint, tmp_path / path)
    clf = load_classifier(file)
    assert clf.tasks == ("mass",) and clf.task_kind("mass") == "binary"
    assert clf.backbone.spec == f"mammoclip-b5:{file}" and len(clf.backbone.weights_sha256) == 64
    x = torch.randn(1, 3, 160, 96, generator=torch.Generator().manual_seed(2))
    weight = checkpoint["model"]["classifier.classification_head.weight"]
    bias = checkpoint["model"]["classifier.classification_head.bias"]
    with torch.no_grad():
        expected = reference.extract_features(x).mean(dim=(2, 3)) @ weight.T + bias
        got = clf(x)["mass"]
    assert relative_error(got, expected) < 1e-4


def test_density_file_is_multiclass_and_task_comes_from_the_folder(tmp_path: Path, b2_encoder) -> None:
    file = save(
        downstream_checkpoint(b2_encoder, 4, B2.num_features), tmp_path / "linear_probe" / "density" / "d.pth"
    )
    clf = load_classifier(file)
    assert clf.tasks == ("density",) and clf.task_kind("density") == "multiclass"
    assert clf.backbone.architecture == "mammoclip-b2"
    assert clf(torch.randn(1, 3, 64, 64))["density"].shape == (1, 4)


def test_task_must_be_given_or_in_the_path_and_must_fit(tmp_path: Path, b2_encoder) -> None:
    assert task_from_path("/m/Classifier/fine_tune/calcification/x.pth") == "calcification"
    assert task_from_path("/m/mass/density/x.pth") == "density"  # the nearest folder wins
    assert task_from_path("/m/mass.pth") is None
    file = save(downstream_checkpoint(b2_encoder, 1, B2.num_features), tmp_path / "ft" / "model.pth")
    with pytest.raises(ModelError, match=r"cannot tell the task.*task='mass'"):
        load_classifier(file)
    assert load_classifier(file, task="calcification").tasks == ("calcification",)
    with pytest.raises(ModelError, match=r"a density head has 4 outputs, this one has 1"):
        load_classifier(file, task="density")


def test_foreign_downstream_files_are_refused(tmp_path: Path, b2_encoder) -> None:
    no_head = downstream_checkpoint(b2_encoder, 1, B2.num_features)
    del no_head["model"]["classifier.classification_head.weight"]
    with pytest.raises(
        ModelError, match=r"not a Mammo-CLIP downstream classifier.*prefixes classifier, image_encoder"
    ):
        load_classifier(save(no_head, tmp_path / "mass" / "a.pth"))
    extra = downstream_checkpoint(b2_encoder, 1, B2.num_features)
    extra["model"]["classifier.other.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"unexpected keys.*classifier.other.weight"):
        load_classifier(save(extra, tmp_path / "mass" / "b.pth"))
    with pytest.raises(ModelError, match=r"top-level keys 'weights'"):
        load_classifier(save({"weights": {}}, tmp_path / "mass" / "c.pth"))
    no_encoder = downstream_checkpoint({}, 1, B2.num_features)
    with pytest.raises(ModelError, match=r"no image_encoder.* weights; pass the backbone"):
        load_classifier(save(no_encoder, tmp_path / "mass" / "d.pth"))
    backbone = create_backbone("timm:tf_efficientnet_b2")
    assert load_classifier(tmp_path / "mass" / "d.pth", backbone=backbone).backbone is backbone


def test_project_file_round_trip(tmp_path: Path, small: Classifier) -> None:
    file = tmp_path / "clf.safetensors"
    save_classifier(small, file)
    loaded = load_classifier(file)
    assert loaded.tasks == small.tasks and loaded.class_names == small.class_names
    assert loaded.backbone.spec == small.backbone.spec and loaded.backbone.default_layer == "bn2"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for task, logits in small(x).items():
            assert torch.equal(loaded(x)[task], logits)
    with safe_open(str(file), "pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
    config = json.loads(metadata["config"])
    assert metadata["format"] == "mammo-sae-classifier" and metadata["format_version"] == "1"
    assert config["kinds"] == {"mass": "binary", "calcification": "binary", "density": "multiclass"}
    assert {"backbone.conv_stem.weight", "heads.density.weight", "heads.mass.bias"} <= keys
    assert not list(tmp_path.glob(".*.tmp"))


def test_downstream_classifier_round_trips_without_its_original_file(tmp_path: Path, b2_encoder) -> None:
    source = save(downstream_checkpoint(b2_encoder, 1, B2.num_features), tmp_path / "mass" / "ft.pth")
    clf = load_classifier(source)
    target = tmp_path / "out" / "mass-b2.safetensors"
    save_classifier(clf, target)
    source.unlink()  # the spec keeps the original path as provenance; the weights live in the new file
    loaded = load_classifier(target)
    assert loaded.backbone.spec == clf.backbone.spec
    assert loaded.backbone.weights_sha256 == clf.backbone.weights_sha256
    x = torch.randn(1, 3, 67, 45)
    with torch.no_grad():
        assert torch.equal(loaded(x)["mass"], clf(x)["mass"])


def test_project_file_errors(tmp_path: Path, small: Classifier) -> None:
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors", metadata={"format": "sae"})
    with pytest.raises(ModelError, match=r"not a mammo-sae classifier"):
        load_classifier(tmp_path / "other.safetensors")
    file = tmp_path / "clf.safetensors"
    save_classifier(small, file)
    with pytest.raises(ModelError, match=r"heads \['mass', 'calcification', 'density'\], not 'birads'"):
        load_classifier(file, task="birads")
    with safe_open(str(file), "pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata()
    save_file(tensors, tmp_path / "v9.safetensors", metadata={**metadata, "format_version": "9"})
    with pytest.raises(ModelError, match=r"format version '9'"):
        load_classifier(tmp_path / "v9.safetensors")
    del tensors["backbone.conv_head.weight"]
    save_file(tensors, tmp_path / "cut.safetensors", metadata=metadata)
    with pytest.raises(ModelError, match=r"missing keys: 'conv_head.weight'"):
        load_classifier(tmp_path / "cut.safetensors")


def test_float16_storage_halves_the_file_and_keeps_the_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    classifier = Classifier.create(create_backbone("timm:resnet10t"), {"mass": 1, "calcification": 1})
    save_classifier(classifier, tmp_path / "fp32.safetensors")
    save_classifier(classifier, tmp_path / "fp16.safetensors", storage_dtype=torch.float16)
    small = load_classifier(tmp_path / "fp16.safetensors")
    assert next(small.parameters()).dtype == torch.float32
    size32, size16 = (
        (tmp_path / "fp32.safetensors").stat().st_size,
        (tmp_path / "fp16.safetensors").stat().st_size,
    )
    assert size16 < 0.55 * size32
    x = torch.randn(2, 3, 128, 96)
    with torch.inference_mode():
        for task in classifier.tasks:
            assert torch.allclose(small(x)[task], classifier(x)[task], atol=1e-3)
