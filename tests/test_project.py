"""Promises of the project skeleton: the README commands CI runs, the pins, the console script."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mammo_sae import cli

ROOT = Path(__file__).resolve().parents[1]


def readme_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"<!-- ci:{marker} -->")
    return next(line for line in lines[start + 1 :] if line and not line.startswith("`"))


def test_readme_holds_the_two_fresh_machine_commands() -> None:
    app = readme_command("app")
    test = readme_command("test")
    assert app.startswith("python3 -m venv .venv") and app.endswith("streamlit run app/Home.py")
    assert test.startswith("python3 -m venv .venv") and "pytest" in test
    assert "requirements-dev.txt" in test and "requirements.txt" in app


def test_ci_runs_the_readme_commands(tmp_path: Path) -> None:
    """The shell function that .ci/run uses picks the same two commands out of the README as a reader
    would, and fails loudly when a marker is missing."""
    script = (ROOT / ".ci" / "run").read_text()
    function = re.search(r"^readme_command\(\) \{.*?^\}", script, flags=re.S | re.M).group(0)

    def ci_pick(marker: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", f"{function}\nreadme_command {marker}"], cwd=cwd, capture_output=True, text=True
        )

    for marker in ("app", "test"):
        assert ci_pick(marker, ROOT).stdout == readme_command(marker)
    (tmp_path / "README.md").write_text("# no markers here\n")
    missing = ci_pick("test", tmp_path)
    assert missing.returncode != 0 and "no command after" in missing.stderr


def test_torch_pair_is_pinned_exactly() -> None:
    pins = dict(
        re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_console_script_lists_commands_and_rejects_unknown(capsys) -> None:
    assert cli.main(["--help"]) == 0
    assert "phantom" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_every_registered_command_answers_help() -> None:
    """Each ``python -m`` entry point starts and prints its usage (two at a time: each imports torch)."""

    def answer(module: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", module.removesuffix(".__main__"), "--help"]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    names = list(cli.COMMANDS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(answer, [cli.COMMANDS[name][0] for name in names]))
    for name, done in zip(names, answers, strict=True):
        assert done.returncode == 0, f"{name}: {done.stderr}"
        assert "usage" in done.stdout.lower()


def test_streamlit_config_keeps_the_server_private() -> None:
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["address"] == "127.0.0.1" and server["enableXsrfProtection"] is True
    assert server["fileWatcherType"] == "none" and server["maxUploadSize"] <= 200
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] in ("type", "none")
