"""Build the demo with the project's own commands, in sequence, with fixed seeds.

Each stage is the command a researcher would run on real data (phantom, finetune, extract, train,
analyze), expressed as that command's config object and passed to its library function; the command line
recorded for it is generated from the same object. Each resumes or skips when its output is complete, so
an interrupted build continues where it stopped. The shipped folder gets the classifier, the SAE(s), the
bundle and ``demo.json`` (generator settings and checksums of both phantom sets, seeds, commands, build
time and every quality figure). Phantom images stay in the work folder, never in the shipped one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mammo_sae import __version__
from mammo_sae.bundle import Bundle
from mammo_sae.bundle.writing.config import AnalyzeConfig
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.config_cli import command_line, config_argv, hw_size, module_prog
from mammo_sae.core.distributed import LOCAL
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.precision import cpu_has_native_bf16
from mammo_sae.data.phantom import GENERATOR_VERSION, PhantomConfig, generate_from_config, load_manifest
from mammo_sae.data.phantom.config import PhantomRunConfig
from mammo_sae.demo import quality
from mammo_sae.demo.config import TOY_NOTE
from mammo_sae.demo.dataset import DEMO_MANIFEST, DemoError
from mammo_sae.extraction.config import ExtractConfig
from mammo_sae.finetuning.config import FinetuneConfig
from mammo_sae.models import load_classifier, save_classifier
from mammo_sae.sae import load_sae, save_sae
from mammo_sae.sae.config import TrainConfig

# The phantom generator's calcification confounder: P(marker | positive) = 0.5 + R/2 = 0.75, P(marker | negative) = 0.25.
CONFOUNDER_RATE = 0.5
# recorded in a toy build's bundle manifest ("warnings"), so the app's Overview says what it is
TOY_WARNING = (
    "toy build (python -m mammo_sae.demo --quick): tiny phantom set, classifier and SAE that only exercise "
    "the pipeline; its figures mean nothing and are not meant to meet the quality targets of the demo"
)


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


STORE_PLACEHOLDER = "<the store of the extract stage>"  # a train stage's --store, known once extract ran


STAGE_PLACEHOLDERS = {
    "WORK": "the build's work folder (python -m mammo_sae.demo --work; default: a folder in the user data folder)",
    "OUT": "the demo folder (python -m mammo_sae.demo --out)",
}


def portable_stages(timings: dict[str, dict[str, Any]], work: Path, out: Path) -> dict[str, dict[str, Any]]:
    """The stage records of ``demo.json`` with the build machine's folders replaced by ``WORK`` / ``OUT``:
    the shipped demo names no folder of the machine that built it."""

    def portable(command: str) -> str:
        for folder, name in sorted(((work, "WORK"), (out, "OUT")), key=lambda pair: -len(str(pair[0]))):
            for spelling in {str(folder), str(folder.resolve())}:
                command = command.replace(spelling, name)
        return command

    return {stage: {**record, "command": portable(record["command"])} for stage, record in timings.items()}


@dataclass
class Stage:
    """One step of the build: a command's config object (the command line is generated from it)."""

    name: str
    command: str  # the command that runs it: phantom, finetune, extract, train or analyze
    config: Any

    @property
    def output(self) -> Path:
        """The folder this stage writes (its ``--out``)."""
        return Path(self.config.out)

    @property
    def argv(self) -> list[str]:
        """The command's arguments for this config (generated, so they parse back to it)."""
        return config_argv(self.config)

    @property
    def command_line(self) -> str:
        return command_line(module_prog(self.command), self.config)


def finetune_stages(plan: DemoPlan, train_data: Path, work: Path, workers: int) -> list[Stage]:
    """Crop pre-training (when the plan has a crop size), then the whole-frame run that it seeds."""
    common = FinetuneConfig(
        data=str(train_data),
        out=str(work / "finetune"),
        backbone=plan.backbone,
        frame_size=hw_size(plan.frame_size),
        epochs=plan.epochs,
        batch_size=plan.batch_size,
        lr=plan.lr,
        backbone_lr=plan.backbone_lr,
        box_weight=plan.box_weight,
        box_head=plan.box_head,
        ema_decay=plan.ema_decay,
        seed=plan.seed,
        workers=workers,
        progress=False,
    )
    if plan.crop is None:
        return [Stage("finetune", "finetune", common)]
    crops = replace(
        common,
        out=str(work / "finetune-crops"),
        epochs=plan.crop_epochs,
        batch_size=plan.crop_batch_size,
        lr=plan.crop_lr,
        backbone_lr=plan.crop_lr,
        crop=hw_size(plan.crop),
        crops_per_image=plan.crops_per_image,
    )
    whole = replace(common, init=str(work / "finetune-crops" / "classifier.safetensors"))
    return [Stage("finetune-crops", "finetune", crops), Stage("finetune", "finetune", whole)]


def stages(plan: DemoPlan, work: Path, out: Path, workers: int) -> list[Stage]:
    """Every stage of a build, in order, as config objects."""
    train_data, heldout = work / "phantoms-train", work / "phantoms-heldout"
    generator = PhantomConfig(
        confounder_rate=CONFOUNDER_RATE, mass_rate=plan.mass_rate, calcification_rate=plan.calcification_rate
    )
    size = hw_size(plan.image_size)

    def phantoms(root: Path, studies: int, seed: int, test_fraction: float) -> PhantomRunConfig:
        settings = replace(generator, studies=studies, seed=seed, test_fraction=test_fraction)
        return PhantomRunConfig(out=str(root), size=size, generator=settings, workers=workers, progress=False)

    sae = TrainConfig(
        store=STORE_PLACEHOLDER,
        out=str(work / "sae-relu"),
        arch="relu",
        l1=plan.l1,
        expansion=plan.expansion,
        epochs=plan.sae_epochs,
        batch_size=plan.sae_batch_size,
        normalize="center-scale",
        resample_every=plan.sae_resample_every,
        dead_window=plan.sae_dead_window,
        seed=plan.seed,
        progress=False,
    )
    planned = [
        Stage("phantom-train", "phantom", phantoms(train_data, plan.train_studies, plan.train_seed, 0.0)),
        Stage("phantom-heldout", "phantom", phantoms(heldout, plan.heldout_studies, plan.heldout_seed, 1.0)),
        *finetune_stages(plan, train_data, work, workers),
        Stage(
            "extract",
            "extract",
            ExtractConfig(
                data=str(train_data),
                classifier=str(out / "classifier.safetensors"),
                out=str(work / "stores"),
                frame_size=hw_size(plan.frame_size),
                tokens_per_image=plan.tokens_per_image,
                augment=True,
                images_per_shard=plan.images_per_shard,
                workers=workers,
                seed=plan.seed,
                progress=False,
            ),
        ),
        Stage("train-relu", "train", sae),
    ]
    if plan.topk:
        topk = replace(sae, out=str(work / "sae-topk"), arch="topk", k=32)
        planned.append(Stage("train-topk", "train", topk))
    analysis = AnalyzeConfig(
        data=str(heldout),
        split="test",
        score_data=str(train_data),
        score_split="training",
        classifier=(str(out / "classifier.safetensors"),),
        sae=str(out / "sae"),
        out=str(out / "bundle"),
        codes_top_n=plan.codes_top_n,
        rank_by=plan.rank_by,
        workers=workers,
        progress=False,
    )
    if plan.name != FULL.name:
        analysis = replace(analysis, warning=(TOY_WARNING,))
    planned.append(Stage("analyze", "analyze", analysis))
    for stage in planned:
        stage.config.validate()
    return planned


def run_stage(stage: Stage) -> dict[str, Any]:
    """Call the library function of a stage's command with its config; returns the command's summary."""
    config = stage.config
    if stage.command == "phantom":
        return generate_from_config(config)
    if stage.command == "finetune":
        from mammo_sae.finetuning.loop import finetune

        return finetune(config)
    if stage.command == "extract":
        from mammo_sae.extraction.run import run_extraction

        return run_extraction(config, LOCAL)
    if stage.command == "train":
        from mammo_sae.sae.trainer import train

        return train(config, LOCAL)
    assert stage.command == "analyze", stage.command
    from mammo_sae.bundle.writing import analyze

    return analyze(config)


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
    say(f"[demo] {stage.name}: {stage.command_line}")
    started = time.perf_counter()
    try:
        summary = run_stage(stage)
    except MammoSaeError as error:
        raise DemoError(f"stage {stage.name} ({stage.command_line}) failed: {error}") from error
    atomic_write_text(log_dir / f"{stage.name}.json", json.dumps(summary, indent=1) + "\n")
    seconds = time.perf_counter() - started
    say(f"[demo] {stage.name}: done in {seconds:.0f} s")
    return {"command": stage.command_line, "seconds": round(seconds, 1)}


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
        "pixel_fingerprint": manifest["pixel_fingerprint"]["value"],
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
            stage.config = replace(stage.config, overwrite=True)
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
    toy = plan.name != FULL.name
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
        if stage.command == "train":
            stage.config = replace(stage.config, store=_store_of(work))
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
        "stages": portable_stages(timings, work, out),
        "placeholders": STAGE_PLACEHOLDERS,
        "machine": build_machine(),
        "build_seconds": round(sum(t["seconds"] for t in timings.values()), 1),
        "this_run_seconds": round(time.perf_counter() - started, 1),
        "quality": figures,
        "targets": {name: f"{op} {bound}" for name, (op, bound) in quality.TARGETS.items()},
        "missed_targets": quality.failures(figures),
        "toy_build": toy,
        "warnings": [TOY_NOTE] if toy else [],
    }
    atomic_write_text(out / DEMO_MANIFEST, json.dumps(manifest, indent=1) + "\n")
    if toy:
        say(f"[demo] {TOY_NOTE}")
    return manifest


def summary(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """What `python -m mammo_sae.demo` prints: where the demo is, its time, figures and missed targets (a
    toy build says that its targets do not apply)."""
    keys = ("build_seconds", "quality", "missed_targets", "toy_build", "warnings")
    return {"out": str(out), **{key: manifest[key] for key in keys}}
