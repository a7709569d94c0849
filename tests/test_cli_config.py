"""One command-line mechanism: each command's frozen config dataclass generates its parser, every command
takes --config FILE.toml (defaults < file < flags), and a config writes back the command line that
rebuilds it (parse(argv(config)) == config)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mammo_sae import cli
from mammo_sae.core.config_cli import (
    REQUIRED,
    RESUME_HELP,
    Command,
    ConfigError,
    build_config,
    comma_floats,
    config_toml,
    config_values,
    hw_size,
    knob,
    knobs,
    read_config_file,
)
from mammo_sae.core.errors import MammoSaeError


@dataclass(frozen=True)
class Example:
    data: str = knob(REQUIRED, "dataset root")
    epochs: int = knob(200, "passes over the data")
    lr: float = knob(3e-4, "learning rate")
    arch: str = knob("relu", "SAE architecture", choices=("relu", "topk"))
    shuffle: bool = knob(True, "shuffle the batches")
    weights: tuple[float, float] = knob((1.0, 2.0), "two weights", parse=comma_floats(2), metavar="A,B")
    frame: tuple[int, int] = knob((64, 32), "frame size", parse=hw_size, metavar="HxW")
    limit: int | None = knob(None, "at most this many images (default: all)")
    model: tuple[str, ...] = knob((), "a model file; repeat for more", repeat=True)
    internal: int = 7  # no knob: not on the command line

    def validate(self) -> Example:
        if self.epochs < 1:
            raise MammoSaeError(f"--epochs must be >= 1, got {self.epochs}")
        return self


EXAMPLE = Command(
    prog="example-command", config=Example, job=lambda config: {"epochs": config.epochs}, description="x"
)


def test_defaults_come_from_the_dataclass() -> None:
    assert EXAMPLE.parse(["--data", "d"]) == Example(data="d")


def test_every_knob_becomes_a_typed_flag() -> None:
    argv = [
        "--data",
        "d",
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--arch",
        "topk",
        "--no-shuffle",
        "--weights",
        "3,4",
    ]
    argv += ["--frame", "20x10", "--limit", "5", "--model", "a", "--model", "b"]
    expected = Example("d", 3, 0.1, "topk", False, (3.0, 4.0), (20, 10), 5, ("a", "b"))
    assert EXAMPLE.parse(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--internal", "3"], "unrecognized arguments: --internal 3"),
        (["--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
        (["--arch", "gated"], "argument --arch: invalid choice: 'gated'"),
        (["--weights", "1,2,3"], "expected 2 comma-separated numbers"),
        (["--epoch", "3"], "unrecognized arguments: --epoch 3"),  # no abbreviations
        (["--epochs", "0"], "example-command: error: --epochs must be >= 1, got 0"),  # validate()
    ],
)
def test_bad_flags_exit_2_with_one_clear_last_line(argv: list[str], message: str, capsys) -> None:
    assert EXAMPLE.main(["--data", "d", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_a_required_flag_is_required_unless_the_config_file_gives_it(tmp_path: Path, capsys) -> None:
    assert EXAMPLE.main([]) == 2
    assert "the following arguments are required: --data" in capsys.readouterr().err
    file = tmp_path / "run.toml"
    file.write_text('data = "from-file"\n')
    assert EXAMPLE.parse(["--config", str(file)]) == Example(data="from-file")


def test_defaults_then_file_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text(
        'data = "D"\nepochs = 5\nlr = 1\nweights = "5,6"\nframe = [40, 20]\nmodel = ["m1", "m2"]\n'
    )
    parsed = EXAMPLE.parse(["--config", str(file), "--lr", "0.01", "--model", "m3"])
    assert parsed == Example("D", 5, 0.01, weights=(5.0, 6.0), frame=(40, 20), model=("m3",))
    assert isinstance(read_config_file(file, Example)["lr"], float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('data = "D"\nepoch = 3\n', "unknown key 'epoch' (did you mean 'epochs'?); the keys are"),
        ('data = "D"\n[train]\nlr = 1\n', "unknown key 'train'"),
        ("epochs = 4.0\n", "'epochs' must be int, got float 4.0"),
        ('lr = "fast"\n', "'lr' must be float, got str 'fast'"),
        ("shuffle = 1\n", "'shuffle' must be bool"),
        ('arch = "gated"\n', "'arch' must be one of ['relu', 'topk']"),
        ('frame = "12"\n', "'frame': expected a size HxW"),
        ("frame = [1, 2, 3]\n", "'frame' must hold 2 values"),
        ("epochs = 3\nepochs-x = 1\n", "unknown key 'epochs-x'"),
        ("lr = \n", "is not valid TOML"),
    ],
)
def test_bad_config_files_are_one_clear_error(tmp_path: Path, text: str, message: str, capsys) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as error:
        EXAMPLE.parse(["--config", str(file), "--data", "D"])
    assert message in str(error.value)
    assert EXAMPLE.main(["--config", str(file), "--data", "D"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"example-command: error: config file {file}") and len(err.strip().splitlines()) == 1
    )


def test_the_unknown_key_error_lists_every_valid_key(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("colour = 1\n")
    with pytest.raises(ConfigError) as error:
        EXAMPLE.parse(["--config", str(file)])
    listed = str(error.value).rsplit(": ", 1)[1].split(", ")
    assert listed == sorted(k.name for k in knobs(Example))


def test_a_file_system_error_is_one_clear_line(tmp_path: Path, capsys) -> None:
    def job(config: Example) -> dict:
        Path(config.data).mkdir()
        return {}

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    command = dataclasses.replace(EXAMPLE, job=job)
    assert command.main(["--data", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("example-command: error: File exists") and str(blocker) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_summary_is_printed_as_json(capsys) -> None:
    assert EXAMPLE.main(["--data", "d", "--epochs", "4"]) == 0
    assert capsys.readouterr().out == '{\n "epochs": 4\n}\n'


def test_help_shows_each_default_once_and_takes_percent_signs(capsys) -> None:
    @dataclass(frozen=True)
    class Percent:
        share: float = knob(0.25, "keep 25% of the tokens")
        codes: int | None = knob(None, "at most N codes (default: all)")

    assert Command("percent", Percent, None, "d").main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "keep 25% of the tokens (default: 0.25)" in " ".join(out.split())
    assert "(default: all)" in out and "None" not in out


# --- every command of the project -------------------------------------------------------------------------


def all_commands() -> list[Command]:
    """Every command and subcommand of the `mammo-sae` table (with a config class)."""
    found = []
    for module, _ in cli.COMMANDS.values():
        command = importlib.import_module(module).COMMAND
        found += [command, *command.subcommands.values()]
    return [command for command in found if command.config is not None]


def example_value(cls: type, name: str, default: Any, kind: Any, choices: Any) -> Any:
    """A valid non-default value of a knob (it must survive the config's validate())."""
    special = {
        "frame_size": (320, 192),
        "crop": (96, 64),
        "size": (512, 400),
        "density_weights": (1.0, 2.0, 3.0, 4.0),
        "ks": "0,1,all",
        "tasks": "mass",
        "threshold_value": 0.5,
        "classifier": "path with space/-classifier.safetensors",
        "files": ("a.dcm", "-starts-with-dash.dcm"),
        "adam_beta1": 0.8,
        "adam_beta2": 0.99,
        "decay_fraction": 0.25,
        "validation_fraction": 0.1,
        "dense_threshold": 0.2,
        "warmup_fraction": 0.1,
        "lesion_crop_fraction": 0.25,
        "ema_decay": 0.9,
        "tokens_per_image": 0.5,
        "mammo_clip_csv": None,
        "score_bundle": None,  # exclusive with score_data (which the test sets)
        "box_overlap": 0.4,
        "flag_off_breast": 0.6,
        "flag_marker": 0.7,
        "flag_lesion": 0.8,
    }
    if name.endswith("_rate") or name == "test_fraction":
        return 0.75
    if name in special:
        return special[name]
    if choices:
        return next(choice for choice in choices if choice != default)
    if kind is bool:
        return not default
    if kind is int:
        return 3 if default is None else default + 3
    if kind is float:
        return 0.5 if default is None else default * 2 + 0.5
    assert kind is str, (cls, name, kind)
    return f"some value/{name}"


def changed_config(command: Command) -> Any:
    """A config of ``command`` with every knob away from its default."""
    values = {}
    for k in knobs(command.config):
        value = example_value(command.config, k.name, k.default, k.kind, k.choices)
        values[k.name] = (value, f"-{value} 2") if k.repeat and not isinstance(value, tuple) else value
    if command.config.__name__ == "DemoConfig":  # --quick into a folder of its own, a stage of its plan
        values |= {"out": "elsewhere", "quick": True, "replace_shipped": False, "rebuild": "extract"}
    if command.config.__name__ == "ExtractConfig":
        values["classifier"] = None  # exactly one of --backbone and --classifier
    return build_config(command.config, values)


COMMANDS = {command.prog: command for command in all_commands()}


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_parse_of_the_written_command_line_gives_back_the_config(prog: str) -> None:
    command = COMMANDS[prog]
    config = changed_config(command)
    defaults = {k.name: k.default for k in knobs(command.config)}
    changed = [name for name, value in config_values(config).items() if value != defaults[name]]
    assert len(changed) >= len(defaults) - 2, "the example moves (almost) every knob off its default"
    assert command.parse(command.argv(config)) == config
    line = command.command_line(config)
    assert line.startswith(prog + " ") or line == prog
    assert command.parse(shlex.split(line)[len(prog.split()) :]) == config


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_a_written_config_file_gives_back_the_config(prog: str, tmp_path: Path) -> None:
    command = COMMANDS[prog]
    config = changed_config(command)
    file = tmp_path / "config.toml"
    file.write_text(config_toml(config))
    assert command.parse(["--config", str(file)]) == config


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_no_help_line_shows_a_default_twice(prog: str, capsys) -> None:
    assert COMMANDS[prog].main(["--help"]) == 0
    out = capsys.readouterr().out
    options = out.split("\n  -")  # one block per option (its help may wrap over several lines)
    doubled = [block for block in options if block.count("(default:") > 1]
    assert not doubled, doubled
    assert "--config FILE.toml" in out


def test_analyze_help_shows_the_codes_default_once(capsys) -> None:
    from mammo_sae.analyze import COMMAND

    assert COMMAND.main(["--help"]) == 0
    block = next(b for b in capsys.readouterr().out.split("\n  -") if b.startswith("-codes-top-n"))
    assert " ".join(block.split()).endswith("(default: all)")


def test_resume_means_the_same_in_train_and_finetune() -> None:
    from mammo_sae.finetuning.config import FinetuneConfig
    from mammo_sae.sae.config import TrainConfig

    for cls in (TrainConfig, FinetuneConfig):
        resume = next(k for k in knobs(cls) if k.name == "resume")
        assert resume.default is True and resume.help == RESUME_HELP


def run_json(command: Command, argv: list[str], capsys) -> dict[str, Any]:
    code = command.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_train_reruns_continue_and_no_resume_starts_over(tmp_path: Path, capsys) -> None:
    from store_fixtures import write_synthetic_store

    from mammo_sae.train import COMMAND

    store = write_synthetic_store(tmp_path / "stores", n_images=8, images_per_shard=2).path
    argv = ["--store", str(store), "--out", str(tmp_path / "run"), "--batch-size", "16", "--no-progress"]
    argv += ["--validation-fraction", "0", "--log-every", "1", "--checkpoint-every", "1"]
    first = run_json(COMMAND, [*argv, "--max-steps", "3"], capsys)
    assert first["steps_this_run"] == 3
    again = run_json(COMMAND, [*argv, "--max-steps", "5"], capsys)  # the same command, a later stop
    assert (again["steps"], again["steps_this_run"]) == (5, 2)
    over = run_json(COMMAND, [*argv, "--max-steps", "2", "--no-resume"], capsys)
    assert (over["steps"], over["steps_this_run"]) == (2, 2)
    logged = [
        json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert max(logged) == 2, "the replaced run's log is gone"


@pytest.mark.slow
def test_finetune_reruns_continue_and_no_resume_starts_over(
    finetune_phantoms: Path, tmp_path: Path, capsys
) -> None:
    from mammo_sae.finetune import COMMAND

    out = tmp_path / "run"
    argv = ["--data", str(finetune_phantoms), "--out", str(out), "--backbone", "timm:resnet10t"]
    argv += ["--frame-size", "64x48", "--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-augment"]
    argv += ["--validation-fraction", "0.34", "--no-progress"]
    run_json(COMMAND, argv, capsys)
    checkpoint = out / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns
    run_json(COMMAND, argv, capsys)  # finished: the rerun continues from the checkpoint, trains nothing
    assert checkpoint.stat().st_mtime_ns == written
    run_json(COMMAND, [*argv, "--no-resume"], capsys)
    assert checkpoint.stat().st_mtime_ns > written
