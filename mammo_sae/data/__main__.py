"""`python -m mammo_sae.data <command>`: inspect a VinDr-Mammo root. Research use only.

Commands: ``summary ROOT`` prints the index summary as JSON (counts per split, labels per image and per
row, BI-RADS, density, missing files). ``check FILE...`` reads each DICOM (or PNG) as the pipeline does and
prints one line per file. Bad input exits with code 2 and a one-line message on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammo_sae.core.config_cli import REQUIRED, Command, knob, module_prog
from mammo_sae.core.errors import DataError, MammoSaeError
from mammo_sae.data.vindr import VindrIndex

PROG = module_prog("data")


def _optional_location(text: str) -> str | None:
    """'none' skips an optional input; anything else ('auto' or a path) is passed on."""
    return None if text.lower() == "none" else text


_optional_location.format_value = lambda value: "none" if value is None else value  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SummaryConfig:
    """Every knob of `python -m mammo_sae.data summary`."""

    root: str = knob(REQUIRED, "the VinDr-Mammo release folder", positional=True, metavar="ROOT")
    check_files: bool = knob(True, "look for the image files on disk")
    images_dir: str = knob("images", "image folder, relative to ROOT")
    image_suffix: str = knob(".dicom", "image file suffix")
    mammo_clip_csv: str | None = knob(
        "auto",
        "Mammo-CLIP vindr_detection_v1_folds.csv: 'auto' (search ROOT and ROOT/mammo_clip), a path, or 'none'",
        parse=_optional_location,
    )
    png_dir: str | None = knob(
        "auto",
        "Mammo-CLIP PNG folder: 'auto' (search for images_png), a path, or 'none'",
        parse=_optional_location,
    )
    list_missing: int = knob(10, "list the first N missing files", metavar="N")


@dataclass(frozen=True)
class CheckConfig:
    """Every knob of `python -m mammo_sae.data check`."""

    files: tuple[str, ...] = knob(
        REQUIRED, "DICOM (.dcm, .dicom) or PNG files", positional=True, repeat=True, metavar="FILE"
    )


def _summary(config: SummaryConfig) -> dict[str, Any]:
    index = VindrIndex.load(
        config.root,
        images_dir=config.images_dir,
        image_suffix=config.image_suffix,
        check_files=config.check_files,
        mammo_clip_csv=config.mammo_clip_csv,
        png_dir=config.png_dir,
    )
    return index.summary(max_listed=config.list_missing)


def _check(config: CheckConfig) -> int:
    """One line per file: what it holds, or why it is refused (stderr); 2 when any file is refused."""
    refused = 0
    for name in config.files:
        try:
            print(f"{name}: ok, {_describe_image(Path(name))}")
        except MammoSaeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            refused += 1
    return 2 if refused else 0


def _describe_image(path: Path) -> str:
    """Read one image the way extraction and the app do; a short description of what was read."""
    from mammo_sae.data.dicom import read_mammogram

    if path.suffix.lower() != ".png":
        image = read_mammogram(path)
        meta = image.metadata
        return f"{meta.rows} x {meta.columns} {image.photometric} {meta.modality}, {meta.transfer_syntax}"
    from mammo_sae.data.png import read_png

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    height, width = read_png(path).shape
    return f"{height} x {width} PNG"


COMMAND = Command(
    prog=PROG,
    config=None,
    job=None,
    description="Inspect a VinDr-Mammo dataset root (research use only).",
    subcommands={
        "summary": Command(
            prog=f"{PROG} summary",
            config=SummaryConfig,
            job=_summary,
            json_indent=2,
            about="print a JSON summary of a VinDr-Mammo root",
            description="Index ROOT (breast-level_annotations.csv, finding_annotations.csv, images/) and "
            "print counts per split as JSON: images, studies, positives per image and per CSV row, "
            "categories, BI-RADS, density, conflicting labels and missing files.",
        ),
        "check": Command(
            prog=f"{PROG} check",
            config=CheckConfig,
            job=_check,
            about="read DICOM or PNG files as the pipeline does; one line per file",
            description="Read each FILE as extraction and the app's upload page do (a DICOM mammogram, or a "
            ".png frame) and print one line per file: its size and encoding, or why it is refused (on "
            "stderr). Exit code 2 when any file is refused.",
        ),
    },
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 bad input or bad arguments)."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
