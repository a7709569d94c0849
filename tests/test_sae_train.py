"""SAE training: config and CLI, schedules, recovery of a known dictionary, normalisation folding,
resampling, metrics files, NaN stops, store mismatches, resume, import of the published weights."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sae_train_helpers import dictionary_store, recovery
from store_fixtures import (
    LABEL_COLUMNS,
    synthetic_identity,
    synthetic_image_ids,
    synthetic_shard,
    write_synthetic_store,
)

from mammo_sae import train as train_cli
from mammo_sae.core.errors import TrainError
from mammo_sae.core.hashing import sha256_file
from mammo_sae.sae import create_sae, load_sae
from mammo_sae.sae.config import TrainConfig, config_toml, read_config_file
from mammo_sae.sae.metrics import LatentActivity, evaluate_sae
from mammo_sae.sae.schedules import lr_at, penalty_at, resample_due
from mammo_sae.sae.trainer import CHECKPOINT_FILE, Trainer, train
from mammo_sae.sae.validation import choose_split
from mammo_sae.store import StoreWriter

SMALL = {"batch_size": 256, "progress": False, "dead_window": 20_000}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest (and least disturbed by other work) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    return dictionary_store(tmp_path_factory.mktemp("sae-train") / "stores")


@pytest.fixture(scope="module")
def offset_store(tmp_path_factory: pytest.TempPathFactory):
    return dictionary_store(tmp_path_factory.mktemp("sae-train-offset") / "stores", offset=3.0, seed=1)


def config(reader, out: Path, **overrides) -> TrainConfig:
    return TrainConfig(store=str(reader.path), out=str(out), **(SMALL | overrides))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = train_cli.main(argv)
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 and captured.out.strip() else {}), captured.err


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# --- config and command line ----------------------------------------------------------------------------


def example_value(field: dataclasses.Field):
    """A valid non-default value of each knob."""
    special = {
        "store": "S",
        "out": "O",
        "arch": "topk",
        "b_dec_init": "geometric-median",
        "normalize": "center-scale",
        "device": "cuda",
        "grad_clip": 1.0,
        "aux_k": 7,
        "max_steps": 11,
        "decay_fraction": 0.25,
        "validation_fraction": 0.1,
        "dense_threshold": 0.2,
        "adam_beta1": 0.8,
        "adam_beta2": 0.99,
        "matryoshka_groups": "8,24",
        "sweep": "l1=1e-3,3e-3",
    }
    if field.name in special:
        return special[field.name]
    if isinstance(field.default, bool):
        return not field.default
    if isinstance(field.default, int):
        return field.default + 3
    return field.default * 2


def test_every_knob_is_a_flag_and_a_config_file_key(tmp_path: Path) -> None:
    fields = dataclasses.fields(TrainConfig)
    flags = {action.dest for action in train_cli.build_parser()._actions} - {"help", "config"}
    assert flags == {field.name for field in fields}
    changed = TrainConfig(**{field.name: example_value(field) for field in fields})
    for field in fields:  # each key alone: the file and the flag give the same config
        value = getattr(changed, field.name)
        base = {"store": "S", "out": "O"}
        file = tmp_path / f"{field.name}.toml"
        file.write_text(config_toml(dataclasses.replace(TrainConfig(**base), **{field.name: value})))
        from_file = train_cli.parse_config(["--config", str(file)])
        flag = "--" + field.name.replace("_", "-")
        argv = [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
        from_flags = train_cli.parse_config(["--store", "S", "--out", "O", *argv])
        assert from_file == from_flags, field.name
        assert getattr(from_file, field.name) == value
    everything = tmp_path / "all.toml"
    everything.write_text(config_toml(changed))
    assert train_cli.parse_config(["--config", str(everything)]) == changed


def test_flags_override_the_config_file_and_hyphenated_keys_work(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text('store = "S"\nout = "O"\nbatch-size = 128\nlr = 1\narch = "topk"\n')
    parsed = train_cli.parse_config(["--config", str(file), "--lr", "0.01"])
    assert (parsed.batch_size, parsed.lr, parsed.arch, parsed.store) == (128, 0.01, "topk", "S")
    assert isinstance(read_config_file(file)["lr"], float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('stor = "S"\n', "unknown key 'stor' (did you mean 'store'?)"),
        ("batch_size = 4096.0\n", "'batch_size' must be int"),
        ('epochs = "200"\n', "'epochs' must be int"),
        ("progress = 1\n", "'progress' must be bool"),
        ('arch = "gated"\n', "'arch' must be one of"),
        ("[train]\nlr = 1e-3\n", "unknown key 'train'"),
        ("lr = \n", "not valid TOML"),
    ],
)
def test_bad_config_files_fail_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text)
    out = tmp_path / "out"
    code, _, err = run_cli(["--config", str(file), "--store", "S", "--out", str(out)], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_help_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "--resample-every" in text and "import-mammosae" in text
    assert train_cli.main(["import-mammosae", "--help"]) == 0
    assert "--metadata" in capsys.readouterr().out
    code, _, err = run_cli(["--store", "S", "--out", "O", "--arch", "gated"], capsys)
    assert code == 2 and "invalid choice" in err
    code, _, err = run_cli(["--store", "S", "--out", "O", "--lr", "-1"], capsys)
    assert code == 2 and "--lr must be a finite number > 0" in err
    code, _, err = run_cli(["--store", "/no/such/store", "--out", "O"], capsys)
    assert code == 2 and "no activation store" in err


def test_schedules() -> None:
    plain = TrainConfig(store="S", out="O")
    assert [lr_at(s, plain, 100) for s in (0, 50, 99)] == [3e-4] * 3
    shaped = dataclasses.replace(plain, lr=1.0, warmup_steps=4, decay_fraction=0.5, l1=2.0, l1_warmup_steps=2)
    assert [lr_at(s, shaped, 10) for s in range(10)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2]
    )
    assert [penalty_at(s, shaped.l1, shaped.l1_warmup_steps) for s in range(4)] == [1.0, 2.0, 2.0, 2.0]
    assert penalty_at(0, None, 2) is None  # an SAE without a sparsity penalty (the TopK family)
    every_3 = dataclasses.replace(plain, epochs=12, resample_every=3)
    assert [e for e in range(1, 13) if resample_due(e, every_3)] == [3, 6, 9]  # never after the last epoch


def test_latent_activity_dead_and_dense_windows() -> None:
    activity = LatentActivity(3, window=10, device="cpu")
    activity.update(torch.tensor([4, 0, 1]), 4)
    assert activity.dead_fraction() == 0.0  # nothing is dead before a whole window has passed
    activity.update(torch.tensor([6, 0, 0]), 6)
    assert activity.dead_mask().tolist() == [False, True, False]
    assert activity.frequency().tolist() == pytest.approx([1.0, 0.0, 0.1])
    assert activity.dense_fraction(0.1) == pytest.approx(1 / 3)
    restored = LatentActivity(3, window=10)
    restored.load_state_dict(activity.state_dict())
    assert torch.equal(restored.since_fired, activity.since_fired)


# --- training ---------------------------------------------------------------------------------------------


def test_topk_training_recovers_the_true_dictionary(store, tmp_path: Path) -> None:
    reader, dictionary = store
    summary = train(config(reader, tmp_path / "run", arch="topk", k=4, lr=3e-3, epochs=60))
    sae = load_sae(tmp_path / "run", expect_d_in=reader.d)
    assert recovery(dictionary, sae.W_dec.detach().numpy()) >= 0.9
    assert summary["eval"]["fvu"] < 0.3 and summary["eval"]["l0"] == pytest.approx(4.0)


def test_matryoshka_trains_through_the_same_trainer_and_recovers_the_dictionary(
    store, tmp_path: Path
) -> None:
    reader, dictionary = store
    summary = train(config(reader, tmp_path / "m", arch="matryoshka", k=4, lr=3e-3, epochs=60))
    sae = load_sae(tmp_path / "m", expect_d_in=reader.d)
    assert sae.architecture == "matryoshka" and len(sae.widths) > 1
    # a little below TopK's 0.9: the first groups (16 latents) must reconstruct alone, so on this flat
    # dictionary (no parents to find) they learn blends of atoms; measured 0.898
    assert recovery(dictionary, sae.W_dec.detach().numpy()) >= 0.85
    assert summary["eval"]["fvu"] < 0.3


def test_metrics_and_eval_files_hold_sane_values(store, tmp_path: Path) -> None:
    reader, _ = store
    out = tmp_path / "run"
    summary = train(config(reader, out, l1=1e-2, lr=3e-3, max_steps=60, log_every=20, checkpoint_every=25))
    records = read_metrics(out)
    assert [r["step"] for r in records] == [20, 40, 60]
    fields = {
        "step", "epoch", "tokens", "lr", "l1_coeff", "loss", "mse", "sparsity", "aux", "l0",
        "explained_variance", "fvu", "nmse", "dead_fraction", "dense_fraction",
        "dec_norm_min", "dec_norm_mean", "dec_norm_max", "tokens_per_s",
    }  # fmt: skip
    for record in records:
        assert fields <= set(record)
        assert record["tokens"] == record["step"] * 256 and record["lr"] == 3e-3
        assert record["loss"] == pytest.approx(record["mse"] + record["sparsity"] + record["aux"], rel=1e-5)
        assert record["fvu"] == pytest.approx(1 - record["explained_variance"])
        assert record["nmse"] > 0 and 0 < record["l0"] <= reader.d * 8
        assert 0 <= record["dead_fraction"] <= 1 and 0 <= record["dense_fraction"] <= 1
        assert record["dec_norm_min"] == pytest.approx(1, abs=1e-5) == record["dec_norm_max"]
        assert record["tokens_per_s"] > 0
    assert records[-1]["fvu"] < records[0]["fvu"]
    evaluation = json.loads((out / "eval.json").read_text())
    val_tokens = sum(int(reader.shard_token_counts[k]) for k in evaluation["shards"])
    assert evaluation["n_tokens"] == val_tokens and evaluation["on"] == "validation"
    assert (
        evaluation["validation"]["kind"] == "shards"
        and evaluation["validation"]["held_out_tokens"] == val_tokens
    )
    assert evaluation["warnings"] == []
    for key in ("mse", "fvu", "explained_variance", "nmse", "l0", "dead_fraction", "dense_fraction"):
        assert math.isfinite(evaluation[key]), key
    assert evaluation["fvu"] == pytest.approx(1 - evaluation["explained_variance"])
    assert summary["eval"] == evaluation and summary["steps"] == 60
    metadata = json.loads((out / "cfg.json").read_text())["metadata"]
    assert metadata["store_id"] == reader.store_id and metadata["store_identity"] == reader.identity
    assert metadata["layer"] == reader.identity["layer"] and metadata["train_config"]["l1"] == 1e-2
    assert metadata["eval"] == evaluation
    saved = read_config_file(out / "train_config.toml")
    assert saved == {k: v for k, v in metadata["train_config"].items() if v is not None}


def test_normalised_training_saves_an_sae_that_takes_raw_features(offset_store, tmp_path: Path) -> None:
    reader, _ = offset_store
    out = tmp_path / "run"
    summary = train(config(reader, out, arch="topk", k=4, lr=3e-3, max_steps=150, normalize="center-scale"))
    metadata = json.loads((out / "cfg.json").read_text())["metadata"]
    norm = metadata["normalisation"]
    assert norm["folded_into_weights"] and norm["scale"] == pytest.approx(
        math.sqrt(reader.d) / norm["mean_norm_centred"]
    )
    sae = load_sae(out)
    validation = torch.from_numpy(reader.features(shards=summary["eval"]["shards"]))
    again = evaluate_sae(sae, [validation], dense_threshold=0.1)
    assert again["fvu"] == pytest.approx(summary["eval"]["fvu"], rel=1e-4)
    assert again["fvu"] < 0.5
    assert float(validation.double().mean(0).norm()) > 3  # far from zero mean: a wrong fold would show
    # the training-space SAE (checkpoint) on normalised features: the same codes and the same FVU
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    unfolded = create_sae("topk", reader.d, reader.d * 8, k=4)
    unfolded.load_state_dict(state["sae"])
    normalised = (validation - state["normalisation"]["mean"].float()) * state["normalisation"]["scale"]
    assert evaluate_sae(unfolded, [normalised])["fvu"] == pytest.approx(again["fvu"], rel=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(validation), unfolded.encode(normalised), rtol=1e-4, atol=1e-4)


def test_resampling_revives_forced_dead_latents(store, tmp_path: Path) -> None:
    reader, _ = store
    trainer = Trainer(config(reader, tmp_path / "run", l1=1e-2, lr=3e-3, max_steps=20, dead_window=1000))
    for batch, _ in zip(trainer.stream, range(20), strict=False):
        trainer.train_step(batch)
    sae, d_sae = trainer.sae, trainer.d_sae
    forced = torch.arange(0, d_sae, 4)
    with torch.no_grad():
        sae.b_enc[forced] = -1e4  # these latents can never fire
    x = trainer._prepare(torch.from_numpy(reader.features(shards=trainer.split.train_shards)))
    assert not (sae.encode(x)[:, forced] > 0).any()
    trainer.activity.since_fired[forced] = trainer.config.dead_window
    alive = torch.ones(d_sae, dtype=torch.bool)
    alive[trainer.activity.dead_mask()] = False
    expected_norm = 0.2 * float(sae.W_enc.detach().norm(dim=0)[alive].mean())
    report = trainer.resample()
    assert report["resampled"] >= len(forced)
    assert report["encoder_norm"] == pytest.approx(expected_norm, rel=1e-5)
    assert sae.W_enc.detach()[:, forced].norm(dim=0) == pytest.approx(
        torch.full((len(forced),), expected_norm), rel=1e-4
    )
    assert float(sae.b_enc.detach()[forced].abs().max()) == 0.0
    state = trainer.optimizer.state[sae.W_enc]
    assert (
        float(state["exp_avg"][:, forced].abs().max())
        == 0.0
        == float(state["exp_avg_sq"][:, forced].abs().max())
    )
    assert float(trainer.optimizer.state[sae.W_dec]["exp_avg"][forced].abs().max()) == 0.0
    fires = (sae.encode(x)[:, forced] > 0).any(dim=0)
    assert fires.float().mean() > 0.9, "resampled latents fire on training tokens"
    assert not trainer.activity.dead_mask()[forced].any()


def test_relu_run_with_resampling_keeps_few_latents_dead(store, tmp_path: Path) -> None:
    reader, _ = store
    summary = train(
        config(reader, tmp_path / "run", l1=3e-2, lr=3e-3, epochs=12, resample_every=3, dead_window=5_000)
    )
    assert summary["resamples"] == 3  # after epochs 3, 6 and 9 (not after the last)
    reports = json.loads((tmp_path / "run" / "cfg.json").read_text())["metadata"]["training"]["resamples"]
    assert [r["epoch"] for r in reports] == [3, 6, 9]


def test_nan_in_the_store_stops_with_a_clear_message(tmp_path: Path, capsys) -> None:
    reader, _ = dictionary_store(tmp_path / "stores", n_images=16, tokens_per_image=40, images_per_shard=4)
    for k in range(reader.n_shards):
        features = np.load(reader.path / f"shard-{k:05d}.npy", mmap_mode="r+")
        features[5, 3] = np.nan
        features.flush()
    # re-sign the shards: a store whose writer let NaN through, not a damaged one (that would be refused)
    metadata = json.loads((reader.path / "metadata.json").read_text())
    for record in metadata["shards"]:
        record["features"]["sha256"] = sha256_file(reader.path / record["features"]["file"])
    (reader.path / "metadata.json").write_text(json.dumps(metadata))
    out = tmp_path / "run"
    code, _, err = run_cli(
        ["--store", str(reader.path), "--out", str(out), "--batch-size", "64", "--no-progress"], capsys
    )
    assert code == 2 and re.search(r"stopped at step \d+ \(epoch 0\)", err) and "Traceback" not in err
    assert "holds NaN or inf features" in err and "no checkpoint had been written yet" in err


def test_divergence_stops_and_keeps_the_last_good_checkpoint(store, tmp_path: Path, capsys) -> None:
    reader, _ = store
    out = tmp_path / "run"
    argv = ["--store", str(reader.path), "--out", str(out), "--batch-size", "256", "--no-progress"]
    code, _, err = run_cli([*argv, "--lr", "1e30", "--checkpoint-every", "1", "--max-steps", "50"], capsys)
    assert code == 2 and "diverged at step" in err
    assert "--lr" in err and "--grad-clip 1.0" in err and "--normalize center-scale" in err
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert all(torch.isfinite(value).all() for value in state["sae"].values())
    assert f"step {state['step']})" in err
    assert not (out / "eval.json").exists()


def test_reruns_resume_or_replace_and_store_mismatches_are_refused(store, tmp_path: Path, capsys) -> None:
    reader, _ = store
    out = tmp_path / "run"
    first = train(config(reader, out, max_steps=5))
    again = Trainer(config(reader, out, max_steps=5))  # --resume is the default: a rerun carries on
    assert again.step == 5 and again.fit()["steps_this_run"] == 0
    assert [r["step"] for r in read_metrics(out)] == [5]
    replaced = Trainer(config(reader, out, max_steps=3, resume=False))  # --no-resume starts from scratch
    assert (
        replaced.step == 0 and not (out / CHECKPOINT_FILE).exists() and not (out / "metrics.jsonl").exists()
    )
    assert replaced.fit()["steps"] == 3 and first["steps"] == 5
    other, _ = dictionary_store(
        tmp_path / "other", d=16, n_images=16, tokens_per_image=40, images_per_shard=4
    )
    code, _, err = run_cli(
        ["--store", str(other.path), "--out", str(out), "--resume", "--batch-size", "256", "--no-progress"],
        capsys,
    )
    assert code == 2 and "was trained on store" in err and "d=32" in err and "d=16" in err
    with pytest.raises(TrainError, match=r"--lr: saved 0\.0003, now 0\.001"):
        Trainer(config(reader, out, max_steps=5, lr=1e-3, resume=True))
    with pytest.raises(TrainError, match=r"--arch topk with these settings: k=300 is larger than d_sae=256"):
        Trainer(config(reader, tmp_path / "k", arch="topk", k=300))


def test_train_with_defaults_on_a_one_shard_store_holds_out_tokens(tmp_path: Path, capsys) -> None:
    """Defect 9: a new user extracts a few images (one shard, fewer tokens than a batch) and runs
    ``train --store S --out D``: a trained SAE, validated on held-out tokens, and eval.json says so."""
    single = write_synthetic_store(tmp_path / "single", n_images=4, images_per_shard=4, tokens_per_image=10)
    assert single.n_shards == 1 and single.n_tokens == 40
    out = tmp_path / "run"
    code, summary, err = run_cli(["--store", str(single.path), "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    assert "held out at random instead of whole shards" in err and "fewer than one batch" in err
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["on"] == "validation" and evaluation["n_tokens"] == 2  # 5 % of 40 tokens
    validation = evaluation["validation"]
    assert (
        validation["kind"] == "tokens"
        and validation["held_out_tokens"] == 2
        and validation["fraction"] == 0.05
    )
    assert "needs at least 2" in validation["reason"] and "also give training tokens" in validation["reason"]
    warnings = evaluation["warnings"]  # the split, the batch, and a dead window no run this short reaches
    assert len(warnings) == 3 and warnings[0] == validation["reason"] and "--dead-window" in warnings[2]
    assert summary["steps"] == 200 and summary["eval"] == evaluation  # 200 epochs of one 38-token batch
    metadata = json.loads((out / "cfg.json").read_text())["metadata"]
    assert metadata["eval"] == evaluation and metadata["training"]["batch_size"] == 38
    split = choose_split(single, 0.05, seed=0)
    assert split.kind == "tokens" and np.intersect1d(split.train_tokens, split.val_tokens).size == 0
    assert len(split.train_tokens) + len(split.val_tokens) == single.n_tokens
    held = torch.from_numpy(single.features()[split.val_tokens])
    again = evaluate_sae(load_sae(out), [held])
    assert again["n_tokens"] == 2 and again["mse"] == pytest.approx(evaluation["mse"], rel=1e-6)


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity (Python's json accepts them; other readers do not)."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_undefined_metrics_are_null_in_every_json_file(tmp_path: Path) -> None:
    """Tokens without variance make FVU undefined (0 / 0): the files say null, never NaN."""
    ids = synthetic_image_ids(4)
    writer = StoreWriter.create_or_resume(
        tmp_path / "stores",
        synthetic_identity(ids, d=8),
        ids,
        images_per_shard=2,
        label_columns=list(LABEL_COLUMNS),
    )
    for k in writer.pending_shards():
        _, index, skipped = synthetic_shard(writer.shard_images(k), d=8, grid=(6, 4), tokens_per_image=8)
        writer.write_shard(k, np.full((len(index), 8), 0.5, dtype=np.float16), index, skipped)
    reader = writer.finalize()
    out = tmp_path / "run"
    summary = train(config(reader, out, batch_size=8, max_steps=6, log_every=2, validation_fraction=0.5))
    evaluation = strict_json((out / "eval.json").read_text())
    assert evaluation["fvu"] is None and evaluation["explained_variance"] is None
    assert math.isfinite(evaluation["mse"]) and summary["eval"] == evaluation
    records = [strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["fvu"] is None and math.isfinite(r["loss"]) for r in records)
    assert strict_json((out / "cfg.json").read_text())["metadata"]["eval"] == evaluation
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    for key in ("config", "split", "resamples", "stream"):
        json.dumps(state[key], allow_nan=False)


def test_the_split_falls_back_and_says_why(tmp_path: Path) -> None:
    many = write_synthetic_store(tmp_path / "many", n_images=12, images_per_shard=4)
    shards = choose_split(many, 0.25, seed=0)
    assert shards.kind == "shards" and shards.warning is None and shards.train_tokens is None
    assert shards.eval_record(many)["held_out_tokens"] == 32 * len(shards.val_shards)  # 4 images x 8 tokens
    too_greedy = choose_split(many, 0.9, seed=0)  # every shard would be held out: tokens instead
    assert too_greedy.kind == "tokens" and len(too_greedy.val_tokens) == round(0.9 * many.n_tokens)
    assert "leaves no training shard" in too_greedy.reason
    none = choose_split(many, 0.0, seed=0)
    assert none.kind == "none" and none.train_shards == [0, 1, 2] and "--validation-fraction 0" in none.reason
    one = write_synthetic_store(tmp_path / "one", n_images=1, tokens_per_image=1, images_per_shard=1)
    tiny = choose_split(one, 0.05, seed=0)
    assert tiny.kind == "none" and "too few to hold out tokens" in tiny.reason
    assert tiny.checkpoint_record() == {"train": [0], "validation": []}


def test_resume_continues_to_the_same_weights(store, tmp_path: Path) -> None:
    reader, _ = store
    common = {"l1": 1e-2, "lr": 3e-3, "epochs": 4, "resample_every": 1, "dead_window": 2_000, "log_every": 7}
    whole = train(config(reader, tmp_path / "whole", **common))
    train(config(reader, tmp_path / "parts", max_steps=42, **common))  # stops mid-epoch 2 (35 per epoch)
    resumed = train(config(reader, tmp_path / "parts", resume=True, **common))
    assert resumed["steps"] == whole["steps"] and resumed["resamples"] == whole["resamples"] == 3
    one, two = load_sae(tmp_path / "whole"), load_sae(tmp_path / "parts")
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(one, name), getattr(two, name), rtol=0, atol=1e-6)
    steps = [r["step"] for r in read_metrics(tmp_path / "parts")]
    assert steps == [r["step"] for r in read_metrics(tmp_path / "whole")]


# --- the published weights --------------------------------------------------------------------------------


def test_import_mammosae_command(tmp_path: Path, capsys) -> None:
    d, h = 8, 32
    reference = create_sae("relu", d, h, seed=3)
    state = {
        "tied_bias": reference.b_dec.detach().reshape(1, d).clone(),
        "encoder._weight": reference.W_enc.detach().t().reshape(1, h, d).clone(),
        "encoder._bias": reference.b_enc.detach().reshape(1, h).clone(),
        "decoder._weight": reference.W_dec.detach().t().reshape(1, d, h).clone(),
    }
    state["pre_encoder_bias._bias_reference"] = state["tied_bias"]
    state["post_decoder_bias._bias_reference"] = state["tied_bias"]
    file = tmp_path / "sparse_autoencoder_final.pt"
    torch.save(state, file)
    code, summary, err = run_cli(
        [
            "import-mammosae",
            str(file),
            "--out",
            str(tmp_path / "imported"),
            "--metadata",
            '{"source": "paper"}',
        ],
        capsys,
    )
    assert code == 0, err
    assert summary["out"] == str(tmp_path / "imported")
    sae = load_sae(tmp_path / "imported")
    x = torch.randn(5, d)
    torch.testing.assert_close(sae(x)[0], reference(x)[0])
    code, _, err = run_cli(
        ["import-mammosae", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(
        ["import-mammosae", str(file), "--out", str(tmp_path / "x"), "--metadata", "[1"], capsys
    )
    assert code == 2 and "--metadata" in err
