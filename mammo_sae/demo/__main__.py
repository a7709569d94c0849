"""`python -m mammo_sae.demo`: build the shipped demo (phantoms -> classifier -> SAE -> analysis bundle).

    python -m mammo_sae.demo [--out weights/demo] [--work build/demo] [--quick] [--rebuild STAGE]

Synthetic phantoms only; every quality figure is measured on held-out phantoms and recorded in
OUT/demo.json. Rerunning continues an interrupted build; ``--rebuild STAGE`` discards that stage and every
later one, then runs them again. Research use only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mammo_sae.core.config_cli import os_error_message
from mammo_sae.core.errors import MammoSaeError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m mammo_sae.demo",
        description="Build the demo bundle on synthetic phantoms with the project's own commands "
        "(phantom, finetune, extract, train, analyze) and measure its quality on held-out phantoms.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="weights/demo", help="folder that receives the shipped files")
    parser.add_argument(
        "--work", default="build/demo", help="folder for phantoms, stores and logs (not shipped)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: exercises the whole path in minutes"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes for phantom rendering and data loading"
    )
    parser.add_argument(
        "--rebuild",
        metavar="STAGE",
        choices=STAGE_NAMES,
        help="redo STAGE and every later one from scratch, for a work folder built with other settings "
        f"(one of: {', '.join(STAGE_NAMES)}); without it, finished stages are kept and a stage whose "
        "settings changed stops the build",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from mammo_sae.demo.build import FULL, QUICK, build

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        manifest = build(
            QUICK if args.quick else FULL,
            Path(args.out),
            Path(args.work),
            workers=args.workers,
            rebuild=args.rebuild,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except MammoSaeError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{parser.prog}: error: {os_error_message(error)}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("build_seconds", "quality", "missed_targets")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
