"""Files per second that `scan_folder` reads from headers alone and that `import_folder` turns into a root
(issue 20, point 8: >= 200 files/s), on a generated PACS-export-like folder of full-size mammograms
(2294 x 1914 x 16 bit, the pixel data the scan must skip over), against reading each file whole with
pydicom in the same run.

    .venv/bin/python benchmarks/folder_scan.py [--files 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom import dcmread

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mammo_sae.data.dicom import write_mammogram  # noqa: E402
from mammo_sae.data.dicom.folder_scan import scan_folder  # noqa: E402
from mammo_sae.data.folder_import import import_folder  # noqa: E402

TARGET_FILES_PER_S = 200.0
SIZE_HW = (2294, 1914)


def make_export(folder: Path, files: int) -> None:
    """``files`` mammograms in four-view studies, one folder per study, named as a PACS writes them."""
    stored = np.random.default_rng(0).integers(0, 4095, SIZE_HW, dtype=np.uint16)
    views = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
    for i in range(files):
        study, (side, view) = i // 4, views[i % 4]
        path = folder / f"STUDY{study:04d}" / f"IM{i:06d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        uid = f"1.2.826.0.1.3680043.8.498.{study}"
        write_mammogram(path, stored, laterality=side, view=view,
                        tags={"StudyInstanceUID": uid, "SeriesInstanceUID": f"{uid}.{i}", "SOPInstanceUID": f"{uid}.{i}.1"})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        make_export(folder, args.files)
        scans = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            scan = scan_folder(folder)
            scans.append(time.perf_counter() - started)
        assert len(scan.images) == args.files and scan.summary()["studies"] == (args.files + 3) // 4
        imports = []
        for _ in range(args.repeat):  # the same folder imported again replaces the previous root
            started = time.perf_counter()
            report = import_folder(folder, Path(tmp) / "root")
            imports.append(time.perf_counter() - started)
        assert report.summary["mammograms"] == args.files
        started = time.perf_counter()
        for path in sorted(folder.rglob("IM*")):
            dcmread(path)  # the whole file, pixel data included (not decoded)
        whole = time.perf_counter() - started
    rate = args.files / statistics.median(scans)
    verdict = "PASS" if rate >= TARGET_FILES_PER_S else "FAIL"
    print(
        f"header scan: {rate:,.0f} files/s (median of {args.repeat}, target >= {TARGET_FILES_PER_S:.0f})  {verdict}"
    )
    imported = args.files / statistics.median(imports)
    verdict = "PASS" if imported >= TARGET_FILES_PER_S else "FAIL"
    print(
        f"import to a root (scan, links, tables): {imported:,.0f} files/s (target >= {TARGET_FILES_PER_S:.0f})  {verdict}"
    )
    print(f"reading each file whole with pydicom: {args.files / whole:,.0f} files/s "
          f"(the scan is x{whole / statistics.median(scans):.1f} faster)")  # fmt: skip


if __name__ == "__main__":
    main()
