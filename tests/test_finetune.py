"""Fine-tuning: the schedule, the study-level validation slice, class weights, and a resumable run that
saves the best epoch in the project's classifier format."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mammo_sae import finetune as finetune_cli
from mammo_sae.data.frame_policy import FramePolicy
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.finetuning import loop
from mammo_sae.finetuning.data import FinetuneError, make_slices, positive_weights
from mammo_sae.models import create_backbone, load_classifier


@pytest.fixture(scope="module")
def phantoms(finetune_phantoms: Path) -> Path:
    return finetune_phantoms


DICOM = FramePolicy("dicom", "dicom", (128, 80))  # the phantoms have no Mammo-CLIP PNGs


def args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--out", str(out), "--backbone", "timm:resnet10t", "--frame-size", "128x80",
        "--epochs", "2", "--batch-size", "4", "--workers", "0", "--validation-fraction", "0.34", "--no-progress",
        *extra,
    ]  # fmt: skip


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    factors = [loop.lr_factor(step, 100, 10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert loop.lr_factor(100, 100, 10) == pytest.approx(0.0)
    assert loop.lr_factor(55, 100, 10) == pytest.approx(0.5)


def test_validation_holds_out_whole_studies(phantoms: Path) -> None:
    index = VindrIndex.load(phantoms)
    slices = make_slices(index, ("mass", "calcification"), 0.34, seed=0, limit=None, frames=DICOM)
    studies = index.images.set_index("image_id")["study_id"]
    train = {studies[r.image_id] for r in slices.train}
    held = {studies[r.image_id] for r in slices.validation}
    assert held and train and not train & held
    assert len(slices.train) + len(slices.validation) == len(index.images)
    again = make_slices(index, ("mass", "calcification"), 0.34, seed=0, limit=None, frames=DICOM)
    assert [r.image_id for r in again.validation] == [r.image_id for r in slices.validation]
    weights = positive_weights(slices.labels, slices.train, ("mass",))
    y = slices.labels.loc[[r.image_id for r in slices.train], "mass"].to_numpy()
    assert float(weights[0]) == pytest.approx((y == 0).sum() / (y == 1).sum())


def test_bad_tasks_and_single_class_slices_are_refused(phantoms: Path) -> None:
    index = VindrIndex.load(phantoms)
    with pytest.raises(FinetuneError, match="not label columns"):
        make_slices(index, ("tumour",), 0.2, 0, None, DICOM)
    with pytest.raises(FinetuneError, match="both classes"):
        make_slices(index, ("mass",), 0.2, 0, 2, DICOM)


@pytest.mark.parametrize("ema", ["0", "0.9"])
def test_finetune_saves_the_best_epoch_and_resumes_to_the_same_weights(
    phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, ema: str
) -> None:
    assert finetune_cli.main(args(phantoms, tmp_path / "whole", "--ema-decay", ema)) == 0
    summary = json.loads(capsys.readouterr().out)
    classifier = load_classifier(tmp_path / "whole" / "classifier.safetensors")
    assert set(classifier.tasks) == {"mass", "calcification"}
    log = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [0, 1]
    best = json.loads((tmp_path / "whole" / "validation.json").read_text())
    assert best["epoch"] == summary["best_epoch"] == int(np.argmax([e["mean_auroc"] for e in log]))

    real_evaluate = loop.evaluate
    calls = {"n": 0}

    def killed_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(loop, "evaluate", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        finetune_cli.main(args(phantoms, tmp_path / "resumed", "--ema-decay", ema))
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    assert finetune_cli.main(args(phantoms, tmp_path / "resumed", "--ema-decay", ema)) == 0
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema") if ema != "0" else ("model",):
        for key, value in whole[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)


def test_a_validation_slice_without_positives_for_a_head_is_warned_and_not_judged(
    phantoms: Path, tmp_path: Path, capsys
) -> None:
    """The fixture's validation slice (seed 0, 0.34 of six studies) holds no calcification: its AUROC is
    undefined, so the best epoch is chosen by the mass head, and every file says so in strict JSON."""
    assert finetune_cli.main(args(phantoms, tmp_path, "--epochs", "1")) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert len(summary["warnings"]) == 1
    assert "has no positives for the calcification head" in summary["warnings"][0]
    assert "chosen by the mean validation AUROC of mass" in summary["warnings"][0]
    assert f"warning: {summary['warnings'][0]}" in captured.err

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is not JSON")

    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line, parse_constant=refuse)
        assert entry["undefined"] == {"calcification": "no positives"}
        assert entry["tasks"]["calcification"]["auroc"] is None
        assert entry["selection"] == pytest.approx(entry["tasks"]["mass"]["auroc"])
    best = json.loads((tmp_path / "validation.json").read_text(), parse_constant=refuse)
    assert best["warnings"] == summary["warnings"]


def test_an_ema_run_validates_and_saves_the_averaged_weights(phantoms: Path, tmp_path: Path) -> None:
    assert finetune_cli.main(args(phantoms, tmp_path, "--ema-decay", "0.5", "--epochs", "1")) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    saved = load_classifier(tmp_path / "classifier.safetensors").state_dict()
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert int(state["ema"]["n_averaged"]) > 1
    assert set(saved) == set(averaged)
    for key, value in saved.items():  # stored as float16 or float32, so compare at that precision
        torch.testing.assert_close(value.float(), averaged[key].float().to(value.dtype).float())
    raw = state["model"]
    moved = [k for k in saved if saved[k].is_floating_point() and not torch.equal(raw[k], averaged[k])]
    assert moved, "an average over several steps differs from the last step's weights"


def test_linear_probe_leaves_the_backbone_untouched(phantoms: Path, tmp_path: Path) -> None:
    assert finetune_cli.main(args(phantoms, tmp_path, "--no-train-backbone", "--epochs", "1")) == 0
    trained = load_classifier(tmp_path / "classifier.safetensors").backbone.state_dict()
    fresh = create_backbone("timm:resnet10t").state_dict()
    assert all(torch.equal(trained[k], fresh[k]) for k in fresh)


def test_bad_flags_exit_2_with_a_message(phantoms: Path, tmp_path: Path, capsys) -> None:
    assert finetune_cli.main(args(phantoms, tmp_path, "--epochs", "0")) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert finetune_cli.main(args(phantoms, tmp_path, "--tasks", "mass,density")) == 2
    assert "not label columns" in capsys.readouterr().err
    assert finetune_cli.main(args(phantoms, tmp_path, "--ema-decay", "1")) == 2
    assert "--ema-decay must be in [0, 1)" in capsys.readouterr().err


def test_tied_token_head_scores_every_token_with_the_classification_head() -> None:
    from mammo_sae.finetuning.token_heads import TiedTokenHead
    from mammo_sae.models import Classifier

    torch.manual_seed(0)
    model = Classifier.create(create_backbone("timm:resnet10t"), {"mass": 1, "calcification": 1}).eval()
    head = TiedTokenHead(model, ("mass", "calcification"))
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.5, -2.0]))
    fmap = torch.randn(2, model.backbone.num_features, 5, 3)
    tokens = head(fmap)
    assert tokens.shape == (2, 2, 5, 3)
    for k, task in enumerate(("mass", "calcification")):
        linear = model.head(task)
        per_token = fmap.permute(0, 2, 3, 1) @ linear.weight[0] + head.bias[k]
        torch.testing.assert_close(tokens[:, k], per_token)
        # the image logit is the token scores' mean, with the head's bias instead of the token bias
        image = tokens[:, k].mean(dim=(1, 2)) - head.bias[k] + linear.bias[0]
        torch.testing.assert_close(model.forward_head(fmap)[task][:, 0], image)
    # the token loss trains the classification head itself; only the token bias is the head's own
    tokens.sum().backward()
    assert model.head("mass").weight.grad is not None and model.head("mass").weight.grad.abs().sum() > 0
    assert list(head.state_dict()) == ["bias"]


@pytest.mark.parametrize("box_head", ["separate", "tied"])
def test_box_supervised_runs_checkpoint_their_token_head(
    phantoms: Path, tmp_path: Path, box_head: str
) -> None:
    extra = ("--epochs", "1", "--box-weight", "1", "--box-head", box_head)
    assert finetune_cli.main(args(phantoms, tmp_path, *extra)) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["token_head"]
    assert (list(state) == ["bias"]) == (box_head == "tied")
    assert "weight" in state or box_head == "tied"
    load_classifier(tmp_path / "classifier.safetensors")  # still mean pool + linear, nothing extra saved


def test_options_of_a_mode_that_is_off_do_not_change_the_run_identity() -> None:
    from dataclasses import replace

    from mammo_sae.finetuning.config import FinetuneConfig

    base = FinetuneConfig(data="d", out="o", backbone="timm:resnet10t")
    same = loop.run_identity(base)
    assert loop.run_identity(replace(base, crops_per_image=9, box_head="tied", out="elsewhere")) == same
    assert loop.run_identity(replace(base, crop=(64, 64))) != same
    assert loop.run_identity(replace(base, ema_decay=0.99)) != same
    boxed = replace(base, box_weight=1.0)
    assert loop.run_identity(replace(boxed, box_head="tied")) != loop.run_identity(boxed)


def test_the_run_identity_follows_the_resolved_frame_source() -> None:
    """``--frames auto`` resumes only while it resolves to the same source: PNGs that appear in the root
    since the checkpoint make it another run; asking for the source it resolved to is the same run."""
    from dataclasses import replace

    from mammo_sae.finetuning.config import FinetuneConfig

    base = FinetuneConfig(data="d", backbone="timm:resnet18", out="o")
    dicom = loop.run_identity(base, FramePolicy("dicom", "auto"))
    assert loop.run_identity(base, FramePolicy("png", "auto")) != dicom
    assert loop.run_identity(replace(base, frames="dicom"), FramePolicy("dicom", "dicom")) == dicom
