"""`mammo-sae <command> ...`: one console script over the `python -m mammo_sae.<command>` entry points.

``COMMANDS`` is the one table of commands: which module runs each and the line `mammo-sae --help` shows.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("mammo_sae.phantom", "generate a synthetic phantom dataset in VinDr layout"),
    "data": ("mammo_sae.data.__main__", "inspect a VinDr-Mammo root (summary) or read image files (check)"),
    "finetune": (
        "mammo_sae.finetune",
        "fine-tune mass / calcification heads (and the backbone) on a dataset",
    ),
    "extract": ("mammo_sae.extract", "extract a layer's feature-map tokens into an activation store"),
    "train": ("mammo_sae.train", "train a sparse autoencoder on an activation store"),
    "analyze": ("mammo_sae.analyze", "concept scores, patches, maps, localisation and curves into a bundle"),
    "demo": (
        "mammo_sae.demo.__main__",
        "build the demo (phantoms -> classifier -> SAE -> bundle) end to end",
    ),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: mammo-sae <command> [options]   (research use only)", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += [
        "",
        "`mammo-sae <command> --help` explains each command; `mammo-sae <command>` is the same as",
        "`python -m mammo_sae.<command>`, and every command reads its flags from `--config FILE.toml` too.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"mammo-sae: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
