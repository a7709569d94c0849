"""Command lines generated from config dataclasses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from mammo_sae.core.config_cli import (
    REQUIRED,
    add_config_arguments,
    comma_floats,
    config_from_args,
    knob,
    run_config_command,
)


@dataclass(frozen=True)
class Example:
    epochs: int = knob(200, "passes over the data")
    lr: float = knob(3e-4, "learning rate")
    arch: str = knob("relu", "SAE architecture", choices=("relu", "topk"))
    shuffle: bool = knob(True, "shuffle the batches")
    weights: tuple[float, float] = knob((1.0, 2.0), "two weights", parse=comma_floats(2), metavar="A,B")
    internal: int = 7  # no knob: not on the command line


def parse(argv: list[str]) -> Example:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Example)
    return config_from_args(Example, parser.parse_args(argv))


def test_defaults_come_from_the_dataclass() -> None:
    assert parse([]) == Example()


def test_every_knob_becomes_a_typed_flag() -> None:
    config = parse(["--epochs", "3", "--lr", "0.1", "--arch", "topk", "--no-shuffle", "--weights", "3,4"])
    assert config == Example(epochs=3, lr=0.1, arch="topk", shuffle=False, weights=(3.0, 4.0))


def test_fields_without_a_knob_are_not_flags() -> None:
    with pytest.raises(SystemExit):
        parse(["--internal", "3"])


@pytest.mark.parametrize("argv", [["--epochs", "many"], ["--arch", "gated"], ["--weights", "1,2,3"]])
def test_bad_values_are_refused_by_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    assert "argument --" in capsys.readouterr().err


def test_extra_values_override_the_flags() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Example, exclude=["epochs"])
    config = config_from_args(Example, parser.parse_args([]), epochs=9, internal=1)
    assert config.epochs == 9 and config.internal == 1


@dataclass(frozen=True)
class WithRequired:
    data: str = knob(REQUIRED, "dataset root")
    limit: int | None = knob(None, "at most this many images")


def test_required_and_optional_knobs() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, WithRequired)
    assert config_from_args(WithRequired, parser.parse_args(["--data", "x"])) == WithRequired("x", None)
    assert config_from_args(WithRequired, parser.parse_args(["--data", "x", "--limit", "3"])).limit == 3
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_a_file_system_error_is_one_clear_line(tmp_path, capsys) -> None:
    @dataclass(frozen=True)
    class Config:
        out: str = knob("x", "where")

    def job(config: Config) -> dict:
        Path(config.out).mkdir()
        return {}

    parser = argparse.ArgumentParser(prog="demo-command")
    add_config_arguments(parser, Config)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert run_config_command(parser, ["--out", str(blocker)], Config, job) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("demo-command: error: File exists") and str(blocker) in err and "Traceback" not in err
    )
