"""The Dataset page's questions of an index: counts, studies by split and finding, views in hanging order."""

from __future__ import annotations

from pathlib import Path

import pytest

from mammo_sae.bundle.browse import browse_studies, dataset_counts, dataset_views
from mammo_sae.bundle.cases import HANGING_ORDER
from mammo_sae.data.phantom import PhantomConfig, generate_dataset
from mammo_sae.data.vindr import VindrIndex


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> VindrIndex:
    root = tmp_path_factory.mktemp("browse") / "phantoms"
    config = PhantomConfig(studies=6, seed=2, height=192, width=160, mass_rate=0.4, calcification_rate=0.4)
    generate_dataset(root, config, workers=1)
    return VindrIndex.load(root)


def test_studies_by_finding_match_a_per_study_reading_of_the_images(index: VindrIndex) -> None:
    images = index.images
    per_study = images.groupby("study_id")[["mass", "calcification"]].max()
    assert browse_studies(images) == sorted(per_study.index)
    for finding in ("mass", "calcification"):
        assert browse_studies(images, finding=finding) == sorted(per_study.index[per_study[finding] == 1])
    none = per_study.index[per_study.sum(axis=1) == 0]
    assert browse_studies(images, finding="none") == sorted(none)
    split = images["split"].iloc[0]
    assert browse_studies(images, split=split) == sorted(
        images.loc[images["split"] == split, "study_id"].unique()
    )
    with pytest.raises(ValueError, match="finding must be one of"):
        browse_studies(images, finding="tumour")


def test_counts_and_views_in_hanging_order(index: VindrIndex) -> None:
    counts = dataset_counts(index)
    assert (counts["images"], counts["studies"], counts["missing"]) == (24, 6, 0)
    assert counts["mass images"] == int(index.images["mass"].sum())
    study = index.images["study_id"].iloc[0]
    views = dataset_views(index.images, study)
    assert [(v.laterality, v.view) for v in views] == list(HANGING_ORDER)
    assert all(v.exists and Path(v.path).is_file() for v in views)
    one = index.images[(index.images["study_id"] == study) & (index.images["laterality"] == "R")]
    assert [v.image_id is None for v in dataset_views(one, study)] == [False, True, False, True]
