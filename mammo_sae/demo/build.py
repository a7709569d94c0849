"""Build the demo with the project's own commands, in sequence, with fixed seeds.

Each stage is the command a researcher would run on real data (phantom, finetune, extract, train,
analyze), called with its command-line arguments; each resumes or skips when its output is complete, so
an interrupted build continues where it stopped. The shipped folder gets the classifier, the SAE(s), the
bundle and ``demo.json`` (generator settings and checksums of both phantom sets, seeds, commands, build
time and every quality figure). Phantom images stay in the work folder, never in the shipped one.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mammo_sae import __version__
from mammo_sae.bundle import Bundle
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.precision import cpu_has_native_bf16
from mammo_sae.data.phantom import GENERATOR_VERSION, load_manifest
from mammo_sae.demo import quality
from mammo_sae.demo.dataset import DEMO_MANIFEST, DemoError
from mammo_sae.models import load_classifier, save_classifier
from mammo_sae.sae import load_sae, save_sae

# The phantom generator's calcification confounder: burned-in markers on half of the positive images.
CONFOUNDER_RATE = 0.5


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one build (``FULL`` ships; ``QUICK`` exercises the same path in tests)."""

    name: str
    train_studies: int
    heldout_studies: int
    image_size: str
    frame_size: str
    backbone: str
    epochs: int
    batch_size: int
    lr: float
    backbone_lr: float
    expansion: int
    l1: float
    sae_epochs: int
    sae_batch_size: int
    tokens_per_image: float
    topk: bool
    codes_top_n: int
    box_weight: float
    box_head: str = "tied"
    ema_decay: float = 0.0  # weight EMA of the fine-tune (0 = raw weights)
    crop: str | None = None  # crop pre-training size (HxW), or None for whole frames only
    crop_epochs: int = 0
    crops_per_image: int = 4
    crop_batch_size: int = 16
    crop_lr: float = 3e-3
    mass_rate: float = 0.4
    calcification_rate: float = 0.3
    images_per_shard: int = 32
    rank_by: str = "peak_deviation"
    sae_resample_every: int = 5
    sae_dead_window: int = 400_000
    train_seed: int = 11
    heldout_seed: int = 12  # never used for anything that is trained
    seed: int = 0


FULL = DemoPlan(
    name="full",
    train_studies=340,
    heldout_studies=80,
    image_size="896x720",
    frame_size="640x384",
    backbone="timm:regnetx_002@os16",
    epochs=12,
    batch_size=8,
    lr=3e-3,
    backbone_lr=3e-3,
    expansion=8,
    l1=1.5e-2,
    sae_epochs=30,
    sae_batch_size=1024,
    tokens_per_image=0.125,
    topk=False,
    codes_top_n=16,
    box_weight=1.0,
    ema_decay=0.995,
)
QUICK = DemoPlan(
    name="quick",
    train_studies=8,
    heldout_studies=4,
    image_size="320x256",
    frame_size="160x96",
    backbone="timm:resnet10t@os16",
    epochs=1,
    batch_size=8,
    lr=3e-3,
    backbone_lr=3e-3,
    expansion=2,
    l1=3e-3,
    sae_epochs=2,
    sae_batch_size=256,
    tokens_per_image=0.5,
    topk=False,
    codes_top_n=8,
    box_weight=1.0,
    sae_resample_every=1,
    sae_dead_window=500,
    images_per_shard=4,
)


def build_machine() -> dict[str, Any]:
    """The CPU the build trained on: with native bf16 the fine-tune runs under bf16 autocast, which changes
    the weights it gives."""
    return {
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
    }


@dataclass
class Stage:
    name: str
    argv: list[str]
    main: Callable[[list[str]], int]

    @property
    def output(self) -> Path:
        """The folder this stage writes (its ``--out``)."""
        return Path(self.argv[self.argv.index("--out") + 1])

    @property
    def command(self) -> str:
        module = {"phantom": "phantom", "finetune": "finetune", "extract": "extract", "train": "train"}.get(
            self.name.split("-")[0], "analyze"
        )
        return " ".join(["python -m mammo_sae." + module, *self.argv])


def finetune_stages(
    plan: DemoPlan, train_data: Path, work: Path, workers: int, main: Callable[[list[str]], int]
) -> list[Stage]:
    """Crop pre-training (when the plan has a crop size), then the whole-frame run that it seeds."""

    def argv(
        out: Path, epochs: int, batch_size: int, lr: float, backbone_lr: float, extra: list[str]
    ) -> list[str]:
        head = ["--data", str(train_data), "--out", str(out), "--backbone", plan.backbone]
        head += ["--frame-size", plan.frame_size, "--epochs", str(epochs), "--batch-size", str(batch_size)]
        head += ["--lr", str(lr), "--backbone-lr", str(backbone_lr)]
        head += ["--box-weight", str(plan.box_weight), "--box-head", plan.box_head]
        head += ["--ema-decay", str(plan.ema_decay), *extra]
        return [*head, "--seed", str(plan.seed), "--workers", str(workers), "--no-progress"]

    if plan.crop is None:
        return [
            Stage(
                "finetune",
                argv(work / "finetune", plan.epochs, plan.batch_size, plan.lr, plan.backbone_lr, []),
                main,
            )
        ]
    crops = ["--crop", plan.crop, "--crops-per-image", str(plan.crops_per_image)]
    first = argv(
        work / "finetune-crops", plan.crop_epochs, plan.crop_batch_size, plan.crop_lr, plan.crop_lr, crops
    )
    init = ["--init", str(work / "finetune-crops" / "classifier.safetensors")]
    second = argv(work / "finetune", plan.epochs, plan.batch_size, plan.lr, plan.backbone_lr, init)
    return [Stage("finetune-crops", first, main), Stage("finetune", second, main)]


def stages(plan: DemoPlan, work: Path, out: Path, workers: int) -> list[Stage]:
    from mammo_sae import analyze, extract, finetune, phantom, train

    train_data, heldout = work / "phantoms-train", work / "phantoms-heldout"
    phantom_common = ["--size", plan.image_size, "--confounder-rate", str(CONFOUNDER_RATE), "--no-progress"]
    phantom_common += [
        "--mass-rate",
        str(plan.mass_rate),
        "--calcification-rate",
        str(plan.calcification_rate),
    ]
    phantom_common += ["--workers", str(workers)]
    sae_common = ["--store", "STORE", "--expansion", str(plan.expansion), "--epochs", str(plan.sae_epochs)]
    sae_common += ["--batch-size", str(plan.sae_batch_size), "--seed", str(plan.seed), "--no-progress"]
    sae_common += [
        "--normalize",
        "center-scale",
        "--resume",
        "--resample-every",
        str(plan.sae_resample_every),
    ]
    sae_common += ["--dead-window", str(plan.sae_dead_window)]
    out_list = [
        Stage(
            "phantom-train",
            [
                "--out",
                str(train_data),
                "--studies",
                str(plan.train_studies),
                "--seed",
                str(plan.train_seed),
                "--test-fraction",
                "0",
                *phantom_common,
            ],
            phantom.main,
        ),
        Stage(
            "phantom-heldout",
            [
                "--out",
                str(heldout),
                "--studies",
                str(plan.heldout_studies),
                "--seed",
                str(plan.heldout_seed),
                "--test-fraction",
                "1",
                *phantom_common,
            ],
            phantom.main,
        ),
        *finetune_stages(plan, train_data, work, workers, finetune.main),
        Stage(
            "extract",
            [
                "--data",
                str(train_data),
                "--classifier",
                str(out / "classifier.safetensors"),
                "--out",
                str(work / "stores"),
                "--frame-size",
                plan.frame_size,
                "--tokens-per-image",
                str(plan.tokens_per_image),
                "--augment",
                "--images-per-shard",
                str(plan.images_per_shard),
                "--workers",
                str(workers),
                "--seed",
                str(plan.seed),
                "--no-progress",
            ],
            extract.main,
        ),
        Stage(
            "train-relu",
            [*sae_common, "--out", str(work / "sae-relu"), "--arch", "relu", "--l1", str(plan.l1)],
            train.main,
        ),
    ]
    if plan.topk:
        out_list.append(
            Stage(
                "train-topk",
                [*sae_common, "--out", str(work / "sae-topk"), "--arch", "topk", "--k", "32"],
                train.main,
            )
        )
    out_list.append(
        Stage(
            "analyze",
            [
                "--data",
                str(heldout),
                "--split",
                "test",
                "--score-data",
                str(train_data),
                "--score-split",
                "training",
                "--classifier",
                str(out / "classifier.safetensors"),
                "--sae",
                str(out / "sae"),
                "--out",
                str(out / "bundle"),
                "--codes-top-n",
                str(plan.codes_top_n),
                "--rank-by",
                plan.rank_by,
                "--workers",
                str(workers),
                "--no-progress",
            ],
            analyze.main,
        )
    )
    return out_list


def _store_of(work: Path) -> str:
    """The store the extract stage of this build wrote (named in its JSON summary)."""
    try:
        store = json.loads((work / "logs" / "extract.json").read_text())["store"]
    except (OSError, ValueError, KeyError) as error:
        raise DemoError(
            f"the extract stage left no summary in {work / 'logs'} ({error}); rerun the demo"
        ) from None
    if not (Path(store) / "metadata.json").is_file():
        raise DemoError(f"the store {store} named by the extract stage is not finished; rerun the demo")
    return store


def _run(stage: Stage, log_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    say(f"[demo] {stage.name}: {stage.command}")
    started = time.perf_counter()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = stage.main(stage.argv)
    (log_dir / f"{stage.name}.json").write_text(buffer.getvalue())
    if code != 0:
        raise DemoError(
            f"stage {stage.name} failed (exit {code}); its output is in {log_dir / (stage.name + '.json')}"
        )
    seconds = time.perf_counter() - started
    say(f"[demo] {stage.name}: done in {seconds:.0f} s")
    return {"command": stage.command, "seconds": round(seconds, 1)}


SHIPPED_SAE_FILES = ("metrics.jsonl", "eval.json", "train_config.toml")


def ship_classifier(run: Path, out: Path) -> None:
    """The best epoch's classifier, stored in float16 (loads as float32; ``tests/test_demo.py`` bounds the
    change), and its validation record. Rewritten only when the run's file changed."""
    target = out / "classifier.safetensors"
    source = run / "classifier.safetensors"
    if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
        save_classifier(load_classifier(source), target, storage_dtype=torch.float16)
    shutil.copyfile(run / "validation.json", out / "classifier_validation.json")


def ship_sae(run: Path, out: Path) -> None:
    """The trained SAE in float16 storage with its training log; the resumable checkpoint stays behind."""
    if (out / "cfg.json").is_file() and (out / "cfg.json").stat().st_mtime >= (
        run / "cfg.json"
    ).stat().st_mtime:
        return
    sae = load_sae(run)
    save_sae(sae, out, sae.metadata, storage_dtype=torch.float16)
    for name in SHIPPED_SAE_FILES:
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)


def _dataset_record(root: Path) -> dict[str, Any]:
    manifest = load_manifest(root)
    return {
        "parameters": manifest["parameters"],
        "seed": manifest["seed"],
        "counts": manifest["counts"],
        "pixel_checksum": manifest["pixel_checksum"]["value"],
    }


def discard_from(
    planned: list[Stage], first: str, work: Path, timings: dict[str, Any], say: Callable[[str], None]
) -> None:
    """Make stage ``first`` and every later one start over: their work folders are deleted and their
    timings dropped. The analysis bundle is shipped, not a work folder: ``analyze --overwrite`` replaces it,
    and the old bundle stays whole until the new one is assembled."""
    names = [stage.name for stage in planned]
    if first not in names:
        raise DemoError(f"--rebuild {first}: this plan's stages are {', '.join(names)}")
    for stage in planned[names.index(first) :]:
        timings.pop(stage.name, None)
        if stage.name == "analyze":
            stage.argv.append("--overwrite")
            continue
        assert stage.output.resolve().is_relative_to(work.resolve()), "only work folders are deleted"
        if stage.output.exists():
            say(f"[demo] --rebuild {first}: deleting {stage.output}")
            shutil.rmtree(stage.output)


def build(
    plan: DemoPlan,
    out: Path,
    work: Path,
    *,
    workers: int = 0,
    rebuild: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every stage and write ``out/demo.json``; returns it. ``rebuild`` names the first stage to redo
    from scratch (with every later one), for a work folder built with other settings."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # seconds spent per stage, summed over interrupted and resumed runs of this work folder
    timings_path = logs / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    planned = stages(plan, work, out, workers)
    if rebuild is not None:
        discard_from(planned, rebuild, work, timings, say)
        atomic_write_text(timings_path, json.dumps(timings, indent=1))
    for stage in planned:
        if stage.name.startswith("train"):
            stage.argv[stage.argv.index("STORE")] = _store_of(work)
        result = _run(stage, logs, say)
        previous = timings.get(stage.name, {})
        seconds = result["seconds"] + (
            previous.get("seconds", 0.0) if previous.get("command") == result["command"] else 0.0
        )
        timings[stage.name] = {"command": result["command"], "seconds": round(seconds, 1)}
        atomic_write_text(timings_path, json.dumps(timings, indent=1))
        if stage.name == "finetune":
            ship_classifier(work / "finetune", out)
        if stage.name.startswith("train-"):
            ship_sae(
                work / f"sae-{stage.name.removeprefix('train-')}",
                out / ("sae" if stage.name == "train-relu" else f"sae-{stage.name.removeprefix('train-')}"),
            )
    bundle = Bundle.open(out / "bundle")
    figures = quality.measure(bundle)
    manifest = {
        "what": "mammo-sae demo: a classifier, SAE and analysis bundle trained and measured on SYNTHETIC PHANTOMS "
        "(not patient data; research use only)",
        "synthetic": True,
        "package_version": __version__,
        "generator_version": GENERATOR_VERSION,
        "plan": asdict(plan),
        "datasets": {
            "train": _dataset_record(work / "phantoms-train"),
            "heldout": _dataset_record(work / "phantoms-heldout"),
        },
        "stages": timings,
        "machine": build_machine(),
        "build_seconds": round(sum(t["seconds"] for t in timings.values()), 1),
        "this_run_seconds": round(time.perf_counter() - started, 1),
        "quality": figures,
        "targets": {name: f"{op} {bound}" for name, (op, bound) in quality.TARGETS.items()},
        "missed_targets": quality.failures(figures),
    }
    atomic_write_text(out / DEMO_MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest
