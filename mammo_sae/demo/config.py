"""The knobs of `python -m mammo_sae.demo`, and where a build goes when no folder is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mammo_sae.core.config_cli import knob
from mammo_sae.core.user_data import user_data_dir
from mammo_sae.demo.dataset import DEMO_DIR, DemoError

# every stage a plan can have, in build order (a plan without crops or a TopK SAE skips those)
STAGE_NAMES = (
    "phantom-train",
    "phantom-heldout",
    "finetune-crops",
    "finetune",
    "extract",
    "train-relu",
    "train-topk",
    "analyze",
)
TOY_NOTE = (
    "quick build: toy sizes that exercise the whole pipeline in a minute; its figures are NOT meant to "
    "meet the demo's quality targets (they apply to the full build), so missed targets are expected"
)


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of `python -m mammo_sae.demo`."""

    out: str | None = knob(
        None,
        "folder that receives the classifier, SAE, bundle and demo.json (default: demo-<plan> in the cache "
        "folder, $MAMMO_SAE_CACHE or ~/.cache/mammo-sae); the shipped weights/demo only with --replace-shipped",
    )
    work: str | None = knob(
        None,
        "folder for phantoms, stores and logs, never shipped (default: demo-<plan>-work in the cache folder)",
    )
    quick: bool = knob(
        False,
        "toy sizes: exercises the whole path in about a minute; a toy build is not meant to meet the quality "
        "targets, and its bundle says so",
    )
    workers: int = knob(2, "processes for phantom rendering and data loading")
    rebuild: str | None = knob(
        None,
        "redo STAGE and every later one from scratch, for a work folder built with other settings; without "
        "it, finished stages are kept and a stage whose settings changed stops the build",
        choices=STAGE_NAMES,
        metavar="STAGE",
    )
    replace_shipped: bool = knob(
        False,
        "allow --out to be the shipped demo (weights/demo), which the app opens by default; needed to rebuild it",
    )

    @property
    def plan_name(self) -> str:
        return "quick" if self.quick else "full"

    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else user_data_dir() / f"demo-{self.plan_name}"

    def work_dir(self) -> Path:
        return Path(self.work) if self.work is not None else user_data_dir() / f"demo-{self.plan_name}-work"

    def validate(self) -> DemoConfig:
        if self.workers < 0:
            raise DemoError(f"--workers must be >= 0, got {self.workers}")
        shipped = self.out_dir().resolve() == DEMO_DIR.resolve()
        if shipped and self.quick:
            raise DemoError(f"--quick never writes into the shipped demo {DEMO_DIR}; give another --out")
        if shipped and not self.replace_shipped:
            raise DemoError(
                f"--out {self.out} is the shipped demo that the app opens by default; add --replace-shipped "
                "to rebuild it on purpose, or give another --out"
            )
        return self
