"""`python -m mammo_sae.data <command>`: inspect a VinDr-Mammo root, or import a folder of DICOMs as one.
Research use only.

Commands: ``summary ROOT`` prints the index summary as JSON (counts per split, labels per image and per
row, BI-RADS, density, missing files). ``check FILE...`` reads each DICOM (or PNG) as the pipeline does and
prints one line per file. ``import DICOM_DIR --out ROOT`` writes an unlabelled root in the VinDr layout from
a PACS export (one line per skipped file on stderr, the summary as JSON). Bad input exits with code 2 and a
one-line message on stderr.
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


@dataclass(frozen=True)
class ImportConfig:
    """Every knob of `python -m mammo_sae.data import`."""

    folder: str = knob(
        REQUIRED, "the folder a PACS export was written to", positional=True, metavar="DICOM_DIR"
    )
    out: str = knob(
        REQUIRED, "the root to write (new, empty, or a previous import: replaced)", metavar="ROOT"
    )
    copy: bool = knob(False, "write de-identified copies of the images into ROOT instead of links to them")
    list_skipped: int = knob(50, "print the first N skipped files with their reason", metavar="N")


def _import(config: ImportConfig) -> dict[str, Any]:
    """Import the folder; the skipped files go to stderr, one line each, the summary is returned."""
    from mammo_sae.data.folder_import import import_folder

    report = import_folder(Path(config.folder), Path(config.out), placement="copy" if config.copy else "link")
    for skip in report.skipped[: config.list_skipped]:
        print(f"skipped {skip.source_file}: {skip.reason}", file=sys.stderr)
    if len(report.skipped) > config.list_skipped:
        print(f"... and {len(report.skipped) - config.list_skipped} more skipped files", file=sys.stderr)
    return {"root": str(report.root), **report.summary}


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
    description="Inspect a VinDr-Mammo dataset root, or import a folder of DICOMs as one (research use only).",
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
        "import": Command(
            prog=f"{PROG} import",
            config=ImportConfig,
            job=_import,
            json_indent=2,
            about="turn a folder of DICOM files (a PACS export) into an unlabelled root",
            description="Walk DICOM_DIR (nested, any file names, DICOMDIR or not) reading headers only, group "
            "the mammograms into studies by salted hashes, take each image's laterality and view from its "
            "tags, else its description text, else its pixels, and write ROOT in the VinDr layout without "
            "labels (breast-level_annotations.csv with source_file, orientation_provenance.csv, import.json, "
            "images/ linked, or copied de-identified). Other files are skipped with a reason. Nothing is written in "
            "DICOM_DIR; no identifying value is written anywhere. Salt: $MAMMO_SAE_ID_SALT.",
        ),
    },
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 bad input or bad arguments)."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
