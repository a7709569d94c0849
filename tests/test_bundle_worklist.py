"""The reading worklist: one row per study, its filters and sorting, and stepping through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammo_sae.bundle import open_bundle
from mammo_sae.bundle import worklist as wl
from mammo_sae.bundle.worklist import (
    NO_FINDING,
    filter_choices,
    filter_worklist,
    sort_worklist,
    step,
    study_findings,
    worklist_table,
)


@pytest.fixture(scope="module")
def bundle(analysis_bundle_path: Path):
    return open_bundle(analysis_bundle_path)


def probabilities(bundle) -> pd.DataFrame:
    """A probability per view and head that is easy to check: position / 1000 + head index / 10."""
    positions = bundle.images["position"].to_numpy()
    return pd.DataFrame(
        {head: positions / 1000 + i / 10 for i, head in enumerate(bundle.tasks)}, index=positions
    )


def test_one_row_per_study_with_each_heads_highest_view_probability(bundle) -> None:
    table = worklist_table(bundle, probabilities(bundle))
    images = bundle.images
    assert list(table["study_id"]) == list(images["study_id"].unique())
    for row in table.itertuples():
        positions = images.loc[images["study_id"] == row.study_id, "position"]
        for i, head in enumerate(bundle.tasks):
            assert getattr(row, f"p_{head}") == pytest.approx(positions.max() / 1000 + i / 10)
        assert row.views == len(positions)
    assert not table["reviewed"].any()


def test_findings_name_every_ground_truth_category_of_the_study(bundle) -> None:
    findings = study_findings(bundle)
    boxes = bundle.boxes.merge(bundle.images[["position", "study_id"]], on="position")
    for study, named in findings.items():
        kinds = set(boxes.loc[boxes["study_id"] == study, "kind"])
        assert set(named.split(", ")) == (kinds or {NO_FINDING})


def test_filters_sort_and_reviewed_marks(bundle) -> None:
    studies = list(bundle.images["study_id"].unique())
    table = worklist_table(bundle, probabilities(bundle), reviewed=studies[:2])
    assert list(table["reviewed"]).count(True) == 2
    assert len(filter_worklist(table, reviewed="reviewed")) == 2
    assert len(filter_worklist(table, reviewed="not reviewed")) == len(table) - 2
    choices = filter_choices(table)
    for kind in choices["findings"]:
        matched = filter_worklist(table, findings=[kind])
        assert all(kind in named.split(", ") for named in matched["findings"])
    assert filter_worklist(table, search=studies[0][:6].upper())["study_id"].iloc[0] == studies[0]
    head = bundle.tasks[0]
    ranked = sort_worklist(table, f"p_{head}", descending=True)[f"p_{head}"].to_numpy()
    assert np.all(np.diff(ranked) <= 0)
    with pytest.raises(ValueError, match="cannot sort"):
        sort_worklist(table, "nonsense")
    with pytest.raises(ValueError, match="reviewed must be"):
        filter_worklist(table, reviewed="maybe")


def test_step_stops_at_either_end() -> None:
    ids = ["a", "b", "c"]
    assert step(ids, "a", 1) == "b"
    assert step(ids, "c", 1) == "c"
    assert step(ids, "a", -1) == "a"
    assert step(ids, "gone", 1) == "a"
    assert step([], "a", 1) is None


def test_a_link_holds_raw_values_and_reads_back_into_the_same_choices() -> None:
    params = wl.link_params("abc123", "L MLO", "mass", "latent", 42, "tuesday")
    assert params == {"study": "abc123", "view": "L MLO", "head": "mass", "overlay": "latent", "latent": "42",
                      "session": "tuesday"}  # fmt: skip
    assert wl.linked_choices(params) == {"study": "abc123", "view": "L MLO", "head": "mass", "overlay": "latent",
                                         "latent": 42, "review-session": "tuesday"}  # fmt: skip
    evidence = wl.link_params("abc123", "R CC", "calcification", "evidence", 42, None)
    assert "latent" not in evidence and "session" not in evidence, "only what is shown is in the address"


def test_a_hand_written_link_is_read_leniently() -> None:
    choices = wl.linked_choices({"overlay": "latent map", "latent": "12a", "study": "  ", "colour": "red"})
    assert choices == {"overlay": "latent"}, "a label for the overlay, no bad latent, no blank or unknown key"
