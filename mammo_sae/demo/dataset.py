"""The demo's phantoms are never committed: they are regenerated from the demo manifest's generator
settings into a cache folder outside git, and their pixel checksum must equal the recorded one (a
generator change that alters pixels is caught here, not shown as if nothing happened)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.user_data import user_data_dir
from mammo_sae.data.phantom import (
    GENERATOR_VERSION,
    PhantomConfig,
    generate_dataset,
    is_phantom_dataset,
    load_manifest,
)
from mammo_sae.data.phantom.pixel_fingerprint import compare, same_pixels

DEMO_DIR = Path(__file__).resolve().parents[2] / "weights" / "demo"
DEMO_MANIFEST = "demo.json"


class DemoError(MammoSaeError):
    """The demo bundle is missing, out of date with the phantom generator, or its data cannot be made."""


def rebuild_command(demo_dir: Path | None = None) -> str:
    """The command that (re)builds the demo in ``demo_dir`` (the shipped one needs --replace-shipped)."""
    folder = demo_dir or DEMO_DIR
    shipped = folder.resolve() == DEMO_DIR.resolve()
    return f"python -m mammo_sae.demo --out {folder}" + (" --replace-shipped" if shipped else "")


def demo_bundle_dir(demo_dir: Path | None = None) -> Path:
    return (demo_dir or DEMO_DIR) / "bundle"


def read_demo_manifest(demo_dir: Path | None = None) -> dict[str, Any]:
    path = (demo_dir or DEMO_DIR) / DEMO_MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DemoError(f"no demo at {path.parent}: build it with {rebuild_command(path.parent)}") from None
    except (OSError, ValueError) as error:
        raise DemoError(
            f"{path} is unreadable ({error}); rebuild the demo with {rebuild_command(path.parent)}"
        ) from None


def phantom_config(record: dict[str, Any]) -> PhantomConfig:
    """The generator settings recorded for a dataset of the demo."""
    parameters = dict(record["parameters"])
    parameters["density_weights"] = tuple(parameters["density_weights"])
    return PhantomConfig(**parameters)


def dataset_ready(root: Path, record: dict[str, Any]) -> bool:
    """A finished phantom dataset with the recorded settings and pixel checksum."""
    if not is_phantom_dataset(root) or (root / ".phantom-in-progress").exists():
        return False
    try:
        manifest = load_manifest(root)
    except MammoSaeError:
        return False
    return manifest["parameters"] == record["parameters"] and same_pixels(manifest, record)


def demo_dataset_root(
    demo_dir: Path | None = None, *, which: str = "heldout", cache: Path | None = None
) -> Path:
    """Where the demo dataset ``which`` is (or will be) regenerated in the cache."""
    record = read_demo_manifest(demo_dir)["datasets"][which]
    return (cache or user_data_dir()) / f"phantoms-{which}-{record['pixel_checksum'][:12]}"


def demo_dataset_ready(
    demo_dir: Path | None = None, *, which: str = "heldout", cache: Path | None = None
) -> bool:
    """Whether the demo dataset ``which`` is in the cache, complete and with the recorded pixels."""
    record = read_demo_manifest(demo_dir)["datasets"][which]
    return dataset_ready(demo_dataset_root(demo_dir, which=which, cache=cache), record)


def ensure_demo_dataset(
    demo_dir: Path | None = None,
    *,
    which: str = "heldout",
    cache: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The root of a demo dataset (``heldout`` for the app and the quality test, ``train`` to rebuild),
    regenerated into the cache when absent; DemoError when the generator no longer makes those pixels.
    ``progress(done, total)`` is called after each image generated (never when nothing is generated)."""
    manifest = read_demo_manifest(demo_dir)
    record = manifest["datasets"][which]
    root = demo_dataset_root(demo_dir, which=which, cache=cache)
    if dataset_ready(root, record):
        return root
    if manifest["generator_version"] != GENERATOR_VERSION:
        raise DemoError(
            f"the demo was built with phantom generator {manifest['generator_version']}, this is {GENERATOR_VERSION}: "
            f"rebuild it with {rebuild_command(demo_dir)}"
        )
    if root.exists():
        shutil.rmtree(root)
    generate_dataset(root, phantom_config(record), workers=0, on_image=progress)
    made = load_manifest(root)
    if not same_pixels(made, record):
        raise DemoError(
            f"the phantom generator now makes different pixels for the demo's {which} set (checksum "
            f"{made['pixel_checksum']['value'][:12]}, the demo expects {record['pixel_checksum'][:12]}"
            f"{_fingerprint_note(made, record)}): rebuild the demo with {rebuild_command(demo_dir)}"
        )
    return root


def _fingerprint_note(made: dict[str, Any], record: dict[str, Any]) -> str:
    """How far the regenerated pixels are from the recorded ones, when both carry a fingerprint."""
    recorded, current = record.get("pixel_fingerprint"), made.get("pixel_fingerprint", {}).get("value")
    if not recorded or not current:
        return ""
    try:
        difference = compare(current, recorded)
    except ValueError:
        return "; the recorded fingerprint is unreadable"
    if difference is None:
        return "; another number of images"
    return f"; {difference.describe()}"
