"""The app's evidence questions on a tiny hand-made bundle: the evidence line's shares against a hand count,
"no box" never turned into a number, the study's head, what fires at a spot against brute force over the
dense codes, patch hits, flags as badges, the shortcut tables and the marker counterfactual's figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.interventions import HeadLinear
from mammo_sae.analysis.regions import region_names
from mammo_sae.bundle import evidence_queries as evq
from mammo_sae.bundle.notes import LatentNotes

GRID, FRAME = (4, 3), (40, 30)  # 12 tokens of 10 x 10 frame pixels
NAMES = region_names(("mass", "calcification"))
TRANSFORM = '{"shape":[40,30],"x":[0,30,0,30],"y":[0,40,0,40]}'  # the frame is the original image


class TinyBundle:
    """The parts of ``Bundle`` the evidence questions read, built from arrays."""

    def __init__(
        self, z_ntl: np.ndarray, evidence_nht: np.ndarray | None, labels_nt: np.ndarray | None
    ) -> None:
        n, t, d = z_ntl.shape
        self.tasks = self.concepts = ("mass", "calcification")
        self.grid, self.frame_size, self.d_sae, self.path = GRID, FRAME, d, Path("tiny")
        self.labelled = True  # an imported folder's bundle has no labels (see the unlabelled test below)
        self.codes = TokenCodes.from_dense(z_ntl.reshape(n * t, d).astype(np.float32), GRID)
        rng = np.random.default_rng(0)
        self.heads = HeadLinear(self.tasks, rng.normal(size=(d, 2)), np.zeros(2))
        self.images = pd.DataFrame(
            {
                "position": np.arange(n),
                "image_id": [f"img{i}" for i in range(n)],
                "study_id": ["s0"] * n,
                "laterality": ["R", "L"][:n],
                "view": ["CC"] * n,
                "transform": [TRANSFORM] * n,
                "mass": [0, 1][:n],
                "calcification": [1, 0][:n],
                "logit_mass_original": [-1.0, 2.0][:n],
                "logit_calcification_original": [0.5, -3.0][:n],
            }
        )
        self.boxes = pd.DataFrame(
            {
                "position": [0, 0],
                "image_id": ["img0", "img0"],
                "kind": ["calcification", "calcification"],
                "xmin": [10.0, 20.0], "ymin": [10.0, 30.0], "xmax": [20.0, 30.0], "ymax": [20.0, 40.0],
                "frame_x0": [10.0, 20.0], "frame_y0": [10.0, 30.0], "frame_x1": [20.0, 30.0], "frame_y1": [20.0, 40.0],
            }
        )  # fmt: skip
        flags = [""] * d
        flags[1], flags[2] = "off_breast", "marker,lesion:calcification"
        self.latents = pd.DataFrame({"flags": flags}, index=pd.Index(np.arange(d), name="latent"))
        self._evidence, self._labels = evidence_nht, labels_nt
        self.has_evidence = evidence_nht is not None
        self.region_names = NAMES if self.has_evidence else ()
        self.manifest: dict = {"summary": {}}
        self.shortcuts = self.counterfactual = self.counterfactual_latents = None

    def evidence(self, position: int) -> np.ndarray | None:
        return None if self._evidence is None else self._evidence[position].reshape(-1, *GRID)

    def regions(self, position: int) -> np.ndarray | None:
        return None if self._labels is None else self._labels[position].reshape(GRID)

    def top_latents(self, concept: str, cls: int, k: int | None) -> np.ndarray:
        return np.arange(self.d_sae)[:k]


def codes(seed: int = 1, n: int = 2, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.random((n, 12, d)) * (rng.random((n, 12, d)) < 0.4)
    return np.round(z, 2)  # float16-exact enough for the comparisons below


def label(name: str) -> int:
    return NAMES.index(name)


@pytest.fixture
def bundle() -> TinyBundle:
    evidence = np.zeros((2, 2, 12), np.float32)
    labels = np.full((2, 12), label("breast"), np.uint8)
    labels[0, [0, 1]] = label("border")
    labels[0, 2] = label("background")
    labels[0, 4] = label("box:calcification")
    # calcification head on image 0: positive evidence 6 in the box, 1 + 1 off the breast, 2 on breast, and
    # negative evidence that must not count
    evidence[0, 1, [4, 0, 2, 7, 9]] = [6.0, 1.0, 1.0, 2.0, -5.0]
    evidence[1, 1, 3] = 1.0
    return TinyBundle(codes(), evidence, labels)


def test_the_evidence_line_gives_the_shares_of_positive_evidence(bundle: TinyBundle) -> None:
    assert evq.evidence_shares(bundle, 0, "calcification")["box:calcification"] == pytest.approx(0.6)
    assert evq.evidence_line(bundle, 0, "calcification") == (
        "calcification evidence: 60% inside the marked calcifications, 20% off the breast"
    )


def test_a_view_without_a_box_of_the_head_says_so_and_gives_no_box_share(bundle: TinyBundle) -> None:
    line = evq.evidence_line(bundle, 1, "calcification")
    assert line == "calcification evidence: no calcification marked on this view, 0% off the breast"
    assert (
        evq.evidence_line(bundle, 0, "mass") == "mass evidence: no token raises the mass logit on this view"
    )


def test_an_unlabelled_bundle_s_line_says_there_is_no_box_to_measure_against(bundle: TinyBundle) -> None:
    bundle.labelled = False
    assert evq.evidence_line(bundle, 0, "calcification") == (
        "calcification evidence: 20% off the breast (no finding boxes: the study has no labels)"
    )


def test_bundles_without_evidence_answer_none() -> None:
    old = TinyBundle(codes(), None, None)
    assert evq.evidence_line(old, 0, "mass") is None
    assert evq.evidence_vmax(old, [0, 1], "mass") is None and not evq.has_evidence(old)


def test_the_study_head_is_the_filter_concept_else_the_most_probable(bundle: TinyBundle) -> None:
    assert evq.study_head(bundle, [0, 1], ()) == "mass", "logit 2.0 on image 1 beats 0.5"
    assert evq.study_head(bundle, [0], ()) == "calcification"
    assert evq.study_head(bundle, [0, 1], ("calcification",)) == "calcification"
    assert evq.evidence_vmax(bundle, [0, 1], "calcification") == pytest.approx(6.0)


@pytest.mark.parametrize("spot", [{"token": 5}, {"box": (10.0, 10.0, 30.0, 20.0)}, {"point": (15.0, 35.0)}])
def test_what_fires_here_matches_brute_force_over_the_dense_codes(bundle: TinyBundle, spot: dict) -> None:
    z_tl = codes()[0].astype(np.float16).astype(np.float64)
    region = evq.spot_mask(bundle, 0, **spot)
    expected_tokens = {"token": [5], "box": [4, 5], "point": [10]}[next(iter(spot))]
    assert np.flatnonzero(region).tolist() == expected_tokens
    table = evq.fires_here(bundle, 0, top=None, **spot).set_index("latent")
    active = np.flatnonzero(z_tl[region].max(axis=0) > 0)
    assert sorted(table.index) == active.tolist()
    for latent in active:
        inside, outside = z_tl[region, latent], z_tl[~region, latent]
        assert table.loc[latent, "mean_in"] == pytest.approx(inside.mean())
        if outside.mean() > 0:
            assert table.loc[latent, "specificity"] == pytest.approx(inside.mean() / outside.mean())
        for h, task in enumerate(bundle.tasks):
            expected = inside.sum() * bundle.heads.effect_lh[latent, h] / 12
            assert table.loc[latent, f"contribution_{task}"] == pytest.approx(expected)
    assert table["mean_in"].is_monotonic_decreasing


def test_what_fires_here_names_and_flags_each_latent(bundle: TinyBundle, tmp_path: Path) -> None:
    notes = LatentNotes(tmp_path, bundle.d_sae)
    notes.save(2, "corner tag", "artifact / marker")
    table = evq.fires_here(bundle, 0, box=(0.0, 0.0, 30.0, 40.0), notes=notes, top=None).set_index("latent")
    assert table.loc[2, "name"] == "corner tag"
    assert table.loc[2, "label"] == "#2 corner tag [marker] [calcification lesion]"
    assert table.loc[2, "flags"] == ["marker", "lesion:calcification"]
    assert table.loc[1, "flags"] == ["off_breast"] and table.loc[1, "label"] == "#1 [off-breast]"


def test_patches_are_marked_with_the_kinds_of_the_boxes_they_overlap(bundle: TinyBundle) -> None:
    patches = pd.DataFrame(
        {"image": [0, 0, 0, 1], "orig_x0": [12.0, 0.0, 19.0, 12.0], "orig_y0": [12.0, 0.0, 19.0, 12.0],
         "orig_x1": [14.0, 10.0, 21.0, 14.0], "orig_y1": [14.0, 10.0, 31.0, 14.0]}
    )  # fmt: skip
    assert evq.patch_hits(bundle, patches) == [["calcification"], [], ["calcification"], []], (
        "a patch touching a box only at its edge does not hit it; another image's boxes never count"
    )


def test_view_findings_are_labelled_per_view(bundle: TinyBundle) -> None:
    findings = evq.view_findings(bundle, [0, 1])
    assert findings["label"].tolist() == ["R CC · calcification 1", "R CC · calcification 2"]


def test_the_shortcut_tables_rank_every_flagged_latent(bundle: TinyBundle) -> None:
    bundle.shortcuts = pd.DataFrame(
        {"task": ["mass"] * 3 + ["calcification"], "latent": [1, 2, 3, 1], "flags": ["off_breast", "marker", "", "off_breast"],
         "difference": [0.1, 0.3, 0.2, 0.0], "share": [0.1, 0.3, 0.2, 0.0]}
    )  # fmt: skip
    table = evq.shortcut_table(bundle, "mass")
    assert table["latent"].tolist() == [2, 3, 1] and table["rank"].tolist() == [1, 2, 3]
    assert table["flags"].tolist() == [["marker"], [], ["off_breast"]]
    assert table["label"].tolist() == ["#2", "#3", "#1"], "the badges are in their own column"
    assert evq.suppressed_latents(bundle) == [1, 2]
    bundle.manifest["summary"]["shortcut_summary"] = [
        {"task": "mass", "auroc": 0.8, "auroc_suppressed": 0.7, "n_suppressed": 2, "share_suppressed": 0.4}
    ]
    summary = evq.shortcut_summary(bundle)
    assert summary.loc[0, "auroc_drop"] == pytest.approx(0.1) and summary.loc[0, "suppressed_share"] == 0.4
    assert evq.shortcut_table(TinyBundle(codes(), None, None), "mass") is None


def test_the_marker_counterfactual_figures_against_a_hand_count(bundle: TinyBundle) -> None:
    bundle.counterfactual = pd.DataFrame(
        {"position": [0, 1], "logit_with_calcification": [1.0, 0.5], "logit_without_calcification": [0.2, 0.1],
         "logit_with_mass": [0.0, 0.0], "logit_without_mass": [0.0, 0.0]}
    )  # fmt: skip
    table = evq.counterfactual_summary(bundle).set_index("head")
    assert table.loc["calcification", "mean logit shift"] == pytest.approx(0.6)
    # image 0 is calcification-positive: without its marker 0.2 against the negative's 0.5 with one
    assert table.loc["calcification", evq.ADVERSARIAL] == 0.0
    assert table.loc["calcification", evq.FAVOURABLE] == 1.0
    assert table.loc["mass", evq.FAVOURABLE] == 0.5, "ties count half"
    shifts = evq.counterfactual_shifts(bundle, "calcification")
    assert shifts["class"].tolist() == ["positive", "negative"]
    assert shifts["logit shift"].tolist() == pytest.approx([0.8, 0.4])
    bundle.manifest["summary"]["counterfactual"] = [
        {"head": "mass", "mean_shift": 0.9, "auroc_adversarial": 0.6}
    ]
    recorded = evq.counterfactual_summary(bundle)
    assert recorded.to_dict("records") == [{"head": "mass", "mean logit shift": 0.9, evq.ADVERSARIAL: 0.6}], (
        "the analysis' own figures when the manifest records them"
    )
    bundle.counterfactual_latents = pd.DataFrame(
        {"head": ["calcification"] * 3 + ["mass"], "latent": [3, 2, 1, 4], "contribution_change": [0.1, -0.4, 0.2, 9.0]}
    )  # fmt: skip
    carriers = evq.counterfactual_latents(bundle, "calcification")
    assert carriers["latent"].tolist() == [2, 1, 3], "both signs, largest change first"
    assert carriers["label"].tolist()[0] == "#2" and carriers["flags"].tolist()[0] == [
        "marker",
        "lesion:calcification",
    ]


def test_badges_read_as_words() -> None:
    assert evq.badge_suffix("off_breast,lesion:mass") == " [off-breast] [mass lesion]"
    assert evq.badge_suffix("") == "" and evq.flag_list(" marker, ") == ["marker"]
