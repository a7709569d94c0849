"""Case snapshot speed on the demo bundle (server time: the app's accessor, no browser), medians over
studies of

- a PNG export of a study seen for the first time (its four views rendered; target <= 2 s),
- a PDF export of it (target <= 4 s),
- both again for the same study and choices (the rendered views cached; the page itself is composed anew),
- the page alone: composing and encoding with the views in hand (PNG, PDF).

    python benchmarks/snapshot.py [--bundle weights/demo/bundle] [--studies 12]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from pathlib import Path

from measure import timed

APP = Path(__file__).resolve().parents[1] / "app"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", default=None, help="bundle folder (default: the shipped demo)")
    parser.add_argument("--studies", type=int, default=12)
    args = parser.parse_args()
    if args.bundle:
        os.environ["MAMMO_SAE_BUNDLE"] = args.bundle
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # bare mode: no runtime warnings per call
    sys.path.insert(0, str(APP))
    import accessors

    from mammo_sae.bundle import snapshot as sn

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("streamlit"):
            logging.getLogger(name).setLevel(logging.ERROR)
    bundle = accessors.open_bundle(accessors.default_bundle_path())
    root = accessors.bundle_data_root(bundle)
    assert root is not None, bundle.missing_dataset_message()
    studies = accessors.study_ids(bundle)[: args.studies]
    options = accessors.ViewOptions(opacity=0.7, threshold=0.1)
    head = bundle.tasks[0]
    choices = {"options": options, "overlay": "evidence map", "head": head}
    times: dict[str, list[float]] = {
        k: [] for k in ("png", "pdf", "png again", "pdf again", "page png", "page pdf")
    }
    accessors.snapshot.snapshot_png(bundle, root, studies[0], **choices)  # imports, calibration, first caches
    for study in studies[1:]:
        times["png"].append(
            timed(lambda s=study: accessors.snapshot.snapshot_png(bundle, root, s, **choices))
        )
        times["pdf"].append(
            timed(lambda s=study: accessors.snapshot.snapshot_pdf(bundle, root, s, **choices))
        )
        times["png again"].append(
            timed(lambda s=study: accessors.snapshot.snapshot_png(bundle, root, s, **choices))
        )
        times["pdf again"].append(
            timed(lambda s=study: accessors.snapshot.snapshot_pdf(bundle, root, s, **choices))
        )
        case, views = accessors.snapshot.case_snapshot(bundle, root, study, **choices)
        times["page png"].append(timed(lambda c=case, v=views: sn.snapshot_png(c, v)))
        times["page pdf"].append(timed(lambda c=case, v=views: sn.snapshot_pdf(c, v)))
    targets = {"png": 2.0, "pdf": 4.0}
    print(f"bundle {bundle.path} · {len(studies) - 1} studies · head {head} · evidence map overlay")
    for name, values in times.items():
        target = f" (target <= {targets[name]:.0f} s)" if name in targets else ""
        print(
            f"{name:>10}: median {statistics.median(values) * 1000:7.0f} ms · max {max(values) * 1000:7.0f} ms{target}"
        )


if __name__ == "__main__":
    main()
