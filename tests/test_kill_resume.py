"""Kill anywhere, lose nothing: `extract`, `train`, `analyze` and `demo --quick` run as processes, are
SIGKILLed at seeded points of their progress, rerun with the same command line until one run finishes,
and must leave exactly what an uninterrupted run leaves: stores, tables, arrays, charts and reports
byte for byte, JSON files but for wall-clock fields, weights within 1e-6.

Every comparison is made at the same absolute paths as the reference (the reference is moved aside first),
because paths are recorded in manifests and hashed into run ids. Set MAMMO_SAE_KILL_SEED to try other
points; the kills survived are printed (pytest -s).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from kill_harness import (
    assert_same_tree,
    choose_points,
    cli,
    file_appears,
    lines_reach,
    run_clean,
    run_with_kills,
)

from mammo_sae.demo.build import QUICK, Stage, stages

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("MAMMO_SAE_KILL_SEED", "8"))
SAE_RECIPE = (
    "--expansion", "2", "--epochs", "3", "--batch-size", "32", "--seed", "0", "--arch", "relu",
    "--l1", "0.003", "--normalize", "center-scale", "--resample-every", "1", "--dead-window", "200",
    "--log-every", "2", "--checkpoint-every", "6", "--resume", "--no-progress",
)  # fmt: skip


@dataclass(frozen=True)
class Demo:
    """An uninterrupted `demo --quick` build: the reference of the demo test and the inputs of the others."""

    root: Path
    argv: list[str]

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def store(self) -> Path:
        return next(p for p in (self.work / "stores").iterdir() if (p / "metadata.json").is_file())

    def stage(self, name: str) -> Stage:
        return next(s for s in stages(QUICK, self.work, self.out, 0) if s.name == name)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kills")


@pytest.fixture(scope="module")
def demo(base: Path) -> Demo:
    root = base / "demo"
    argv = cli("mammo_sae.demo", "--quick", "--out", root / "out", "--work", root / "work", "--workers", "0")
    run_clean(argv)
    return Demo(root, argv)


def replace_flag(argv: list[str], flag: str, value: Path) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = str(value)
    return argv


def test_extract_killed_anywhere_resumes_to_the_uninterrupted_store(demo: Demo, base: Path) -> None:
    parent = base / "extract"
    argv = cli("mammo_sae.extract", *replace_flag(demo.stage("extract").argv, "--out", parent))
    candidates = [("plan.json", file_appears(parent, "*/plan.json"))]
    candidates += [(f"shard {k}", file_appears(parent, f"*/shard-{k:05d}.done.json")) for k in range(7)]
    report = run_with_kills(argv, choose_points(SEED, candidates, 3, max_delay=0.3), name="extract")
    print(report.line())
    assert report.kills, "no run was killed before it finished"
    store = next(parent.iterdir())
    assert store.name == demo.store.name, "the resumed store has another identity"
    shards = json.loads((store / "metadata.json").read_text())["counts"]["shards"]
    assert assert_same_tree(demo.store, store) == 3 * shards + 2  # shard files, plan and metadata, bitwise


def test_train_killed_anywhere_resumes_to_the_uninterrupted_weights(demo: Demo, base: Path) -> None:
    run, reference = base / "train" / "run", base / "train" / "reference"
    argv = cli("mammo_sae.train", "--store", demo.store, "--out", run, *SAE_RECIPE)
    run_clean(argv)
    run.rename(reference)
    metrics = run / "metrics.jsonl"
    candidates = [(f"metrics line {n}", lines_reach(metrics, n)) for n in range(1, 39)]
    report = run_with_kills(argv, choose_points(SEED, candidates, 3, max_delay=0.2), name="train")
    print(report.line())
    assert report.kills, "no run was killed before it finished"
    assert_same_tree(reference, run, weights=("*",))


def test_analyze_killed_anywhere_resumes_to_the_uninterrupted_bundle(demo: Demo, base: Path) -> None:
    bundle, reference = demo.out / "bundle", base / "analyze-reference"
    bundle.rename(reference)  # the demo's own analyze run, rerun at the same paths
    argv = cli("mammo_sae.analyze", *demo.stage("analyze").argv)
    names = ["work/identity.json", "work/analysis-00000.npz", "work/score-00000.npz", "codes/codes.json"]
    names += ["latents.parquet", "curves.png", "report.md"]
    candidates = [(name, file_appears(bundle, name)) for name in names]
    report = run_with_kills(argv, choose_points(SEED, candidates, 3, max_delay=0.3), name="analyze")
    print(report.line())
    assert report.kills, "no run was killed before it finished"
    files = json.loads((bundle / "manifest.json").read_text())["files"]
    assert assert_same_tree(reference, bundle) == len(files) + 1  # every output file and the manifest


def test_demo_killed_anywhere_resumes_to_the_uninterrupted_build(demo: Demo, base: Path) -> None:
    reference = base / "demo-reference"
    demo.root.rename(reference)
    root = demo.root
    candidates = [
        ("train phantoms", file_appears(root, "work/phantoms-train/phantom.json")),
        ("finetune checkpoint", file_appears(root, "work/finetune/checkpoint.pt")),
        ("shard 3", file_appears(root, "work/stores/*/shard-00003.done.json")),
        ("sae checkpoint", file_appears(root, "work/sae-relu/checkpoint.pt")),
        ("shipped sae", file_appears(root, "out/sae/cfg.json")),
        ("analysis chunk", file_appears(root, "out/bundle/work/score-00000.npz")),
        ("bundle latents", file_appears(root, "out/bundle/latents.parquet")),
    ]
    report = run_with_kills(demo.argv, choose_points(SEED, candidates, 3, max_delay=1.0), name="demo")
    print(report.line())
    assert report.kills, "no run was killed before it finished"
    # the per-stage logs record what each run did (shards resumed, seconds), not the build
    weights = ("work/sae-relu/*", "out/sae/*", "work/finetune/*")
    assert_same_tree(reference, root, skip=("work/logs/*",), weights=weights)
