"""Generate a synthetic mammography phantom dataset in the VinDr-Mammo layout (research use only).

    python -m mammo_sae.phantom --out data/phantoms --studies 50 --seed 0 [--size 1280x1024]
        [--confounder-rate 0.8 --confounder-finding calcification] [--overwrite]

Prints a JSON summary on stdout at the end; exit code 2 for bad arguments or a refused output folder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mammo_sae.core.config_cli import Command, module_prog
from mammo_sae.data.phantom import generate_from_config
from mammo_sae.data.phantom.config import PhantomRunConfig

COMMAND = Command(
    prog=module_prog("phantom"),
    config=PhantomRunConfig,
    job=generate_from_config,
    description=(
        "Generate synthetic mammography phantoms (NOT patient data, no diagnostic validity) in the "
        "VinDr-Mammo layout: images/<study>/<image>.dicom, breast-level and finding CSVs, metadata.csv, "
        "plus phantom_truth.csv (every planted object) and phantom.json (parameters, checksums)."
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 2 bad arguments or refused output folder)."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
