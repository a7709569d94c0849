"""`python -m mammo_sae.data summary ROOT`: JSON on stdout, exit code 2 and no traceback on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mammo_sae.data.__main__ import main

REPO = Path(__file__).resolve().parents[1]
BREAST = (
    "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split\n"
    "s1,x1,a,L,CC,3518,2800,BI-RADS 4,DENSITY C,training\n"
    "s2,x2,b,R,MLO,2812,2012,BI-RADS 1,DENSITY B,test\n"
)
FINDING = (
    "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,"
    "finding_categories,finding_birads,xmin,ymin,xmax,ymax,split\n"
    "s1,x1,a,L,CC,3518,2800,BI-RADS 4,DENSITY C,\"['Suspicious Calcification', 'Mass']\",BI-RADS 4,1,2,3,4,training\n"
    "s1,x1,a,L,CC,3518,2800,BI-RADS 4,DENSITY C,['Mass'],BI-RADS 4,5,6,7,8,training\n"
    "s2,x2,b,R,MLO,2812,2012,BI-RADS 1,DENSITY B,['No Finding'],,,,,,test\n"
)
TOP_KEYS = {
    "root",
    "splits",
    "images",
    "studies",
    "finding_rows",
    "positives",
    "categories_image_level",
    "images_without_findings",
    "breast_birads",
    "breast_density",
    "conflicting_images",
    "missing_files",
    "mammo_clip",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "breast-level_annotations.csv").write_text(BREAST)
    (tmp_path / "finding_annotations.csv").write_text(FINDING)
    (tmp_path / "images" / "s1").mkdir(parents=True)
    (tmp_path / "images" / "s1" / "a.dicom").write_bytes(b"")
    return tmp_path


def test_summary_prints_indented_json(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n  "root"'), "indent 2"
    summary = json.loads(out)
    assert set(summary) == TOP_KEYS
    assert summary["splits"] == ["training", "test"]
    assert summary["images"] == {"training": 1, "test": 1, "total": 2}
    assert summary["positives"]["image"]["training"] == {"mass": 1, "calcification": 1}
    assert summary["positives"]["row"]["training"] == {"mass": 2, "calcification": 1}
    assert summary["conflicting_images"]["training"] == {
        "mass": 0,
        "calcification": 1,
        "mass_or_calcification": 1,
    }
    assert summary["missing_files"] == {"checked": True, "count": 1, "first": ["images/s2/b.dicom"]}


def test_bad_root_or_csv_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m mammo_sae.data summary: error: ") and "is not a folder" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "breast-level_annotations.csv").write_text("study_id,image_id\ns1,a\n")
    assert main(["summary", str(tmp_path)]) == 2
    assert "lacks the required column(s) laterality, view_position" in capsys.readouterr().err


def test_help_and_usage_errors_return_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "summary" in capsys.readouterr().out
    assert main(["summary", "--help"]) == 0
    assert "--no-check-files" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["frobnicate"]) == 2


def test_summary_reads_its_root_and_flags_from_a_config_file(root: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "summary.toml"
    config.write_text(f'root = "{root}"\ncheck-files = false\nlist_missing = 0\n')
    assert main(["summary", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["missing_files"]["checked"] is False
    assert main(["summary", "--config", str(config), "--check-files"]) == 0  # a flag beats the file
    assert json.loads(capsys.readouterr().out)["missing_files"]["count"] == 1
    config.write_text('roots = "x"\n')
    assert main(["summary", "--config", str(config)]) == 2
    assert "unknown key 'roots' (did you mean 'root'?)" in capsys.readouterr().err


def test_module_runs_as_a_subprocess(root: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mammo_sae.data", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)

    done = run("summary", str(root), "--no-check-files")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["finding_rows"]["total"] == 3
    bad = run("summary", str(root / "nowhere"))
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr
