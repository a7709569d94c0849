"""benchmarks/scale.py keeps working: its measuring child, its verdicts and a --quick end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"


def load_scale():
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_child_reports_its_own_peak_memory_and_times(tmp_path: Path) -> None:
    (tmp_path / "fake_command.py").write_text(
        "import json, time\n"
        "def main(argv):\n"
        "    block = b'x' * (64 << 20)  # 64 MiB the command writes to\n"
        "    time.sleep(0.5)  # held long enough for the RSS sampler to see it\n"
        "    print(json.dumps({'argv': argv, 'size': len(block)}))\n"
        "    return 0\n"
    )
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--child", str(report), "fake_command", "--flag", "x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["argv"] == ["--flag", "x"]
    figures = json.loads(report.read_text())
    assert figures["returncode"] == 0 and figures["gpu_peak_mib"] is None
    assert figures["peak_rss_mib"] >= figures["after_import_mib"] + 60  # the 64 MiB block shows
    assert figures["peak_anon_mib"] >= 60 and figures["wall_s"] >= 0 and figures["cpu_s"] >= 0


def test_verdict_flags_memory_that_grows_with_the_data() -> None:
    scale = load_scale()

    def run(size: str, tokens: int, rss: float, wall: float):
        figures = {"peak_rss_mib": rss, "peak_anon_mib": rss / 2, "wall_s": wall, "cpu_s": wall}
        return scale.Measured("train", size, tokens // 10, tokens, 1.0, figures | {"after_import_mib": 500})

    flat = scale.verdict(run("1x", 1000, 1000.0, 1.0), run("4x", 4000, 1100.0, 4.0))
    assert "(flat" in flat and "wall x4.00" in flat and "marginal 1000.0 us/token" in flat
    growing = scale.verdict(run("1x", 1000, 1000.0, 1.0), run("4x", 4000, 1200.0, 4.0))
    assert "NOT FLAT" in growing
