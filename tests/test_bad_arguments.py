"""Bad flags, config files and inputs for `extract`, `train`, `analyze`, `finetune`, `phantom` and `demo`: each
is refused before any work starts (nothing written to --out), with exit code 2 and a last line that names the
bad thing."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from store_fixtures import write_synthetic_store

from mammo_sae import analyze, extract, finetune, phantom, train
from mammo_sae.demo import __main__ as demo_cli
from mammo_sae.models import Classifier, create_backbone, save_classifier
from mammo_sae.sae import create_sae
from mammo_sae.sae.config import TrainConfig
from mammo_sae.sae.io import save_sae
from mammo_sae.sae.trainer import train as train_sae

Cases = list[tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Inputs:
    root: Path
    data: Path
    classifier: Path
    store: Path  # the store of the training run in root / "run"
    other_store: Path  # the same d from another source: another store id

    def resolve(self, args: list[str]) -> list[str]:
        """Arguments naming a fixture file (notes.txt, sae-*, *.toml, *.safetensors) as paths in root."""
        named = ("notes.txt", "sae-", "classifier.safetensors")
        return [str(self.root / a) if a.startswith(named) or a.endswith(".toml") else a for a in args]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Phantoms, a resnet18 classifier, SAEs that do not fit it, two stores of one d from other sources, a
    training run on the first, and files that are not what their flag expects."""
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset

    root = tmp_path_factory.mktemp("bad-arguments")
    data = root / "phantoms"
    config = PhantomConfig(studies=6, seed=5, height=256, width=208, test_fraction=0.0, mass_rate=0.5)
    generate_dataset(data, config, workers=1)
    classifier = Classifier.create(create_backbone("timm:resnet18"), {"mass": 1, "calcification": 1})
    save_classifier(classifier, root / "classifier.safetensors")
    save_sae(create_sae("relu", 16, 32), root / "sae-d16")
    save_sae(create_sae("relu", 512, 1024), root / "sae-resnet34", {"backbone": {"architecture": "resnet34"}})
    save_sae(create_sae("relu", 512, 1024), root / "sae-layer3", {"layer": "layer3"})
    (root / "notes.txt").write_text("not a model\n")
    (root / "typo.toml").write_text('store = "S"\nout = "O"\nbatch_sise = 64\n')
    (root / "wrong-type.toml").write_text('store = "S"\nout = "O"\nlr = "fast"\n')
    store = write_synthetic_store(root / "store-a", seed=0).path
    other = write_synthetic_store(root / "store-b", seed=1).path
    run = TrainConfig(
        store=str(store),
        out=str(root / "run"),
        batch_size=8,
        max_steps=2,
        validation_fraction=0.0,
        progress=False,
    )
    train_sae(run)
    return Inputs(root, data, root / "classifier.safetensors", store, other)


def refused(
    command: ModuleType,
    argv: list[str],
    out: Path,
    capsys: pytest.CaptureFixture[str],
    before: frozenset[str] = frozenset(),
) -> str:
    """Run ``command.main(argv)``: exit 2, no traceback, nothing new in ``out``; returns the last line."""
    code = command.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip() and "Traceback" not in err, err
    assert not out.exists() or frozenset(p.name for p in out.iterdir()) == before, "work started"
    return err.strip().splitlines()[-1]


def check(last_line: str, prog: str, expected: list[str]) -> None:
    assert last_line.startswith(f"python -m mammo_sae.{prog}: error: "), last_line
    for text in expected:
        assert text in last_line, last_line


RESNET = ["--backbone", "timm:resnet18"]
EXTRACT_CASES: Cases = [
    ([*RESNET, "--colour", "red"], ["unrecognized arguments: --colour red"]),
    ([*RESNET, "--tokens-per-image", "half"], ["--tokens-per-image", "'half'"]),
    ([*RESNET, "--frame-size", "12"], ["--frame-size", "HxW", "'12'"]),
    ([*RESNET, "--split", "validation"], ["--split", "invalid choice: 'validation'"]),
    # a shortened flag is a typo, not an abbreviation: it is refused rather than guessed
    ([*RESNET, "--tokens-per-imag", "0.5"], ["unrecognized arguments: --tokens-per-imag 0.5"]),
    (["--classifier", "notes.txt"], ["notes.txt is not a readable torch.save file"]),
    (["--classifier", "sae-d16/sae_weights.safetensors"], ["not a mammo-sae classifier"]),
]
ANALYZE_CASES: Cases = [
    (["--sae", "sae-d16"], ["takes d_in=16 features but 512 were expected"]),
    (["--sae", "sae-resnet34"], ["trained on resnet34 features", "timm:resnet18"]),
    (["--sae", "sae-layer3"], ["trained on layer 'layer3'", "'layer4'"]),
    (["--sae", "sae-d16", "--top-patches", "many"], ["argument --top-patches: invalid int value: 'many'"]),
    (["--sae", "sae-d16", "--colour", "red"], ["unrecognized arguments: --colour red"]),
]
FINETUNE_CASES: Cases = [
    (["--init", "classifier.safetensors"], ["is a timm:resnet18 classifier", "trains timm:resnet10t"]),
    (["--backbone", "timm:no_such_net"], ["no model 'no_such_net'"]),
    (["--epochs", "two"], ["argument --epochs: invalid int value: 'two'"]),
    (["--learning-rate", "1"], ["unrecognized arguments: --learning-rate 1"]),
    (["--frame-size", "0x10"], ["--frame-size", "'0x10'"]),
]
TRAIN_CASES: Cases = [
    (["--config", "typo.toml"], ["unknown key 'batch_sise' (did you mean 'batch_size'?)"]),
    (["--config", "wrong-type.toml"], ["'lr' must be float, got str 'fast'"]),
    (["--config", "none.toml"], ["none.toml does not exist"]),
    (["--epochz", "3"], ["unrecognized arguments: --epochz 3"]),
    (["--epoch", "3"], ["unrecognized arguments: --epoch 3"]),
    (["--k", "many"], ["argument --k: invalid int value: 'many'"]),
]


@pytest.mark.parametrize(("extra", "expected"), EXTRACT_CASES)
def test_extract_refuses(
    inputs: Inputs, tmp_path: Path, capsys, extra: list[str], expected: list[str]
) -> None:
    out = tmp_path / "stores"
    argv = ["--data", str(inputs.data), "--out", str(out), "--workers", "0", "--no-progress"]
    check(refused(extract, [*argv, *inputs.resolve(extra)], out, capsys), "extract", expected)


def test_extract_refuses_a_root_that_is_not_a_dataset(inputs: Inputs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "stores"
    argv = ["--data", str(inputs.root), "--out", str(out), *RESNET, "--no-progress"]
    check(refused(extract, argv, out, capsys), "extract", ["breast-level_annotations.csv"])


@pytest.mark.parametrize(("extra", "expected"), ANALYZE_CASES)
def test_analyze_refuses(
    inputs: Inputs, tmp_path: Path, capsys, extra: list[str], expected: list[str]
) -> None:
    out = tmp_path / "bundle"
    argv = ["--data", str(inputs.data), "--classifier", str(inputs.classifier), "--out", str(out)]
    argv += ["--workers", "0", "--no-progress"]
    check(refused(analyze, [*argv, *inputs.resolve(extra)], out, capsys), "analyze", expected)


@pytest.mark.parametrize(("extra", "expected"), FINETUNE_CASES)
def test_finetune_refuses(
    inputs: Inputs, tmp_path: Path, capsys, extra: list[str], expected: list[str]
) -> None:
    out = tmp_path / "run"
    argv = ["--data", str(inputs.data), "--out", str(out), "--backbone", "timm:resnet10t"]
    argv += ["--frame-size", "128x80", "--workers", "0", "--validation-fraction", "0.34", "--no-progress"]
    check(refused(finetune, [*argv, *inputs.resolve(extra)], out, capsys), "finetune", expected)


@pytest.mark.parametrize(("extra", "expected"), TRAIN_CASES)
def test_train_refuses(inputs: Inputs, tmp_path: Path, capsys, extra: list[str], expected: list[str]) -> None:
    out = tmp_path / "run"
    argv = ["--store", str(inputs.store), "--out", str(out), "--no-progress"]
    check(refused(train, [*argv, *inputs.resolve(extra)], out, capsys), "train", expected)


def test_train_refuses_to_resume_on_a_store_from_another_source(
    inputs: Inputs, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(inputs.root / "run", run)
    before = frozenset(p.name for p in run.iterdir())
    argv = ["--store", str(inputs.other_store), "--out", str(run), "--resume", "--no-progress"]
    argv += ["--batch-size", "8", "--max-steps", "4", "--validation-fraction", "0"]
    last = refused(train, argv, run, capsys, before)
    check(last, "train", ["checkpoint.pt was trained on store", f"is store {inputs.other_store.name}"])


@pytest.mark.parametrize("command", [extract, analyze, finetune, train, phantom, demo_cli])
def test_every_command_refuses_an_unknown_config_key(command: ModuleType, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    file = tmp_path / "typo.toml"
    file.write_text(f'outt = "{out}"\n')
    prog = command.__name__.removeprefix("mammo_sae.").removesuffix(".__main__")
    last = refused(command, ["--config", str(file)], out, capsys)
    check(last, prog, ["unknown key 'outt' (did you mean 'out'?)", "the keys are"])
