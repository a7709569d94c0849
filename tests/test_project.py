"""Promises of the project skeleton: the README commands CI runs, the pins, the console script."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
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


def command_modules() -> set[str]:
    """Every `python -m mammo_sae.<x>` entry point: a package-root module or a package ``__main__`` that
    runs ``main()`` when executed (the console script itself aside)."""
    package = ROOT / "mammo_sae"
    candidates = [*package.glob("*.py"), *package.glob("*/__main__.py")]
    found = set()
    for path in candidates:
        if path.name != "cli.py" and 'if __name__ == "__main__":' in path.read_text():
            found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def test_the_command_table_holds_every_command_module() -> None:
    assert {module for module, _ in cli.COMMANDS.values()} == command_modules()
    assert "demo" in cli.COMMANDS


def test_console_script_lists_every_command_and_rejects_unknown(capsys) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, about) in cli.COMMANDS.items():
        assert f"  {name}" in out and about in out
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_every_registered_command_answers_help(capsys) -> None:
    """`mammo-sae <x> --help` (and each subcommand's) exits 0 and prints its usage."""
    for name, (module, _) in cli.COMMANDS.items():
        assert cli.main([name, "--help"]) == 0, name
        assert "usage" in capsys.readouterr().out.lower(), name
        for sub in importlib.import_module(module).COMMAND.subcommands:
            assert cli.main([name, sub, "--help"]) == 0, (name, sub)
            assert f"{name} {sub}" in capsys.readouterr().out


def test_a_command_module_runs_as_a_script() -> None:
    command = [sys.executable, "-m", "mammo_sae.cli", "demo", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "--replace-shipped" in done.stdout, done.stderr


def test_streamlit_config_keeps_the_server_private() -> None:
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["address"] == "127.0.0.1" and server["enableXsrfProtection"] is True
    assert server["fileWatcherType"] == "none" and server["maxUploadSize"] <= 200
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] in ("type", "none")
