"""The marker counterfactual: shift and AUROC tables on hand-made numbers, carriers that add up to the shift,
and the bundle writer's pass over a tiny phantom set (equal to the normal stream and to a direct forward
pass, resumable after a lost or damaged chunk)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_fixtures import FRAME_HW, Setting, analyze_config

from mammo_sae.analysis.counterfactual import (
    CounterfactualShapeError,
    adversarial_aurocs,
    marker_shift,
    shift_carriers,
)
from mammo_sae.analysis.interventions import HeadLinear, shortcut_logits
from mammo_sae.analysis.stream import run_chunk
from mammo_sae.bundle.writing import counterfactual as cf
from mammo_sae.bundle.writing.models import chunk_models, load_inputs, split_records
from mammo_sae.bundle.writing.run import frame_policy
from mammo_sae.core.metrics import auroc
from mammo_sae.data.phantom import load_manifest
from mammo_sae.data.phantom.counterfactual import marker_frames
from mammo_sae.data.preprocess import model_input
from mammo_sae.data.vindr import VindrIndex

# ------------------------------------------------------------------------------------ hand-made numbers


def test_marker_shift_on_hand_made_logits() -> None:
    without = np.zeros((3, 2))
    with_ = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, -1.0]])
    table = marker_shift(with_, without, ("calc", "mass"), {"first two": np.array([True, True, False])})
    calc = table[(table["head"] == "calc") & (table["subset"] == "all")].iloc[0]
    assert calc["n"] == 3 and calc["mean"] == 2 and calc["median"] == 2 and calc["std"] == 1
    assert calc["sem"] == pytest.approx(1 / np.sqrt(3)) and calc["share_raised"] == 1
    mass = table[(table["head"] == "mass") & (table["subset"] == "all")].iloc[0]
    assert mass["mean"] == 0 and mass["share_raised"] == pytest.approx(1 / 3)
    first = table[(table["head"] == "calc") & (table["subset"] == "first two")].iloc[0]
    assert first["n"] == 2 and first["mean"] == 1.5
    with pytest.raises(CounterfactualShapeError):
        marker_shift(with_, without[:2], ("calc", "mass"))


def test_adversarial_and_favourable_pairings_on_hand_made_logits() -> None:
    y = np.array([1, 1, 0, 0])
    without = np.array([0.5, 0.4, 0.45, 0.1])
    with_ = without + 1.0
    had = np.array([True, False, True, False])
    table = adversarial_aurocs(with_[:, None], without[:, None], y[:, None], ("calc",), had).iloc[0]
    assert table["auroc_adversarial"] == 0.0  # every unmarked positive under every marked negative
    assert table["auroc_favourable"] == 1.0
    assert table["auroc_no_marker"] == 0.75 and table["auroc_all_marker"] == 0.75
    assert table["auroc_as_is"] == 0.75  # positives 1.5, 0.4 against negatives 1.45, 0.1
    assert table["gap"] == 1.0 and table["positives"] == 2 and table["n"] == 4
    one_class = adversarial_aurocs(with_[:, None], without[:, None], np.ones((4, 1), int), ("calc",))
    assert np.isnan(one_class["auroc_adversarial"].iloc[0]) and "auroc_as_is" not in one_class


def _head(effect_l: np.ndarray, const: float = 0.3) -> HeadLinear:
    return HeadLinear(("calc",), effect_l[:, None], np.array([const]))


def test_carriers_on_hand_made_latents() -> None:
    effect = np.array([2.0, -1.0, 0.5, 3.0])
    zw = np.array([[1.0, 0.0, 1.0, 0.2], [1.0, 0.0, 1.0, 0.2]])
    zwo = np.array([[0.0, 1.0, 1.0, 0.2], [0.5, 0.5, 1.0, 0.2]])
    table = shift_carriers(zw, zwo, _head(effect), "calc", logit_shift_n=np.array([3.5, 2.0]))
    # latent 0: +0.75 activation x 2 = +1.5; latent 1: -0.75 x -1 = +0.75; 2 and 3 never change
    assert table["latent"].tolist() == [0, 1]
    assert table["contribution_change"].tolist() == pytest.approx([1.5, 0.75])
    assert table["activation_change"].tolist() == pytest.approx([0.75, -0.75])
    assert table["images_more"].tolist() == [2, 0] and table["images_less"].tolist() == [0, 2]
    assert table["share"].sum() == pytest.approx(1.0) and table["rank"].tolist() == [1, 2]
    attrs = table.attrs
    assert attrs["sae_shift"] == pytest.approx(2.25) and attrs["latents_changed"] == 2
    assert attrs["raising"] == pytest.approx(2.25) and attrs["lowering"] == 0
    assert attrs["logit_shift"] == pytest.approx(2.75) and attrs["remainder"] == pytest.approx(0.5)
    assert attrs["carriers_for_share"] == 2  # 1.5 / 2.25 < 90%


def test_carriers_add_up_to_the_sae_shift_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    n, d = 40, 25
    zwo = rng.exponential(1.0, (n, d)) * (rng.random((n, d)) < 0.3)
    zw = zwo + rng.normal(0, 0.4, (n, d)) * (rng.random((n, d)) < 0.5)
    zw = np.maximum(zw, 0)
    zw[:, 7] = zwo[:, 7]  # one latent the marker never moves
    effect = rng.normal(0, 1, d)
    head = _head(effect)
    logit_shift = shortcut_logits(zw, head)[:, 0] - shortcut_logits(zwo, head)[:, 0] + 0.1
    table = shift_carriers(zw.astype(np.float32), zwo.astype(np.float32), head, "calc", logit_shift)
    assert 7 not in set(table["latent"]) and len(table) == int((np.abs(zw - zwo).sum(0) > 0).sum())
    for row in table.itertuples(index=False):
        brute = np.mean([(zw[i, row.latent] - zwo[i, row.latent]) * effect[row.latent] for i in range(n)])
        assert row.contribution_change == pytest.approx(brute, rel=1e-5, abs=1e-7)
    size = np.abs(table["contribution_change"].to_numpy())
    assert (np.diff(size) <= 0).all(), "sorted by the size of the change"
    assert {np.sign(v) for v in table["contribution_change"]} == {-1.0, 1.0}, "both signs are kept"
    assert table["contribution_change"].sum() == pytest.approx(table.attrs["sae_shift"], abs=1e-9)
    assert table.attrs["sae_shift"] == pytest.approx(np.mean(logit_shift) - 0.1, abs=1e-5)
    assert table.attrs["remainder"] == pytest.approx(0.1, abs=1e-5)
    assert table["gross_share"].sum() == pytest.approx(1.0)


# ------------------------------------------------------------------------------ the bundle's pass


@dataclass
class Run:
    setting: Setting
    config: object
    records: list
    models: object
    work: Path


@pytest.fixture(scope="module")
def run(analysis_setting: Setting, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("cf-bundle") / "bundle"
    config = analyze_config(analysis_setting, out, batch_size=4)
    device = torch.device("cpu")
    inputs = load_inputs(config, device)
    index = VindrIndex.load(config.data)
    records, _ = split_records(index, config.split, None, frame_policy(config, index, inputs))
    assert inputs.frame_size == FRAME_HW
    return Run(analysis_setting, config, records, chunk_models(inputs, device), out / "work")


@pytest.fixture(scope="module")
def result(run: Run) -> cf.CounterfactualResult:
    out = cf.marker_counterfactuals(run.config, run.records, run.models, FRAME_HW, run.work)
    assert out is not None
    return out


def test_every_image_gets_a_pair_and_the_file_version_is_the_normal_stream(run: Run, result) -> None:
    table = result.table
    assert table["position"].tolist() == [r.position for r in run.records] and not result.errors
    markers = {e["image_id"]: e["marker"] for e in load_manifest(run.setting.data)["images"]}
    assert table["had_marker"].tolist() == [markers[i] for i in table["image_id"]]
    assert table["had_marker"].any() and not table["had_marker"].all()
    streamed = run_chunk(
        run.records, run.models, FRAME_HW, keep_codes=False, top_n=None, batch_size=4, workers=0
    )
    had = table["had_marker"].to_numpy()[:, None]
    file_logits = np.where(had, result.logit_with_nh, result.logit_without_nh)
    assert np.abs(file_logits - streamed.logit_original_nh).max() <= 1e-5
    file_zbar = np.where(had, result.zbar_with_nl, result.zbar_without_nl)
    assert np.abs(file_zbar - streamed.zbar_nl).max() <= 1e-5
    assert (result.logit_with_nh != result.logit_without_nh).any(), "the marker moves the logits"


def test_the_other_version_matches_a_direct_forward_pass(run: Run, result) -> None:
    classifier = run.models.feature_model
    tasks = ("mass", "calcification")
    for k, record in enumerate(run.records[:3]):
        frames = marker_frames(run.setting.data, record.image_id, FRAME_HW)
        for frame, logits in (
            (frames.with_marker, result.logit_with_nh),
            (frames.without_marker, result.logit_without_nh),
        ):
            with torch.inference_mode():
                out = classifier(torch.from_numpy(model_input(frame.pixels))[None])
            direct = np.array([float(out[t].reshape(-1)[0]) for t in tasks])
            assert np.abs(direct - logits[k]).max() <= 1e-4


def test_a_lost_or_damaged_chunk_is_recomputed_and_the_others_reused(run: Run, result, monkeypatch) -> None:
    paths = sorted(run.work.glob("counterfactual-0*.npz"))
    assert len(paths) == -(-len(run.records) // run.config.chunk_images) >= 3
    paths[1].unlink()
    paths[2].write_bytes(b"not a zip")
    computed: list[int] = []
    original = cf._run_chunk

    def counting(root, records, *args):
        computed.append(records[0].position)
        return original(root, records, *args)

    monkeypatch.setattr(cf, "_run_chunk", counting)

    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    again = cf.marker_counterfactuals(run.config, run.records, run.models, FRAME_HW, run.work, bar)
    step = run.config.chunk_images
    assert computed == [step, 2 * step] and bar.n == len(run.records)
    pd.testing.assert_frame_equal(again.table, result.table)
    assert np.abs(again.logit_with_nh - result.logit_with_nh).max() <= 1e-9
    assert np.array_equal(again.zbar_without_nl, result.zbar_without_nl)
    computed.clear()
    fewer = cf.marker_counterfactuals(run.config, run.records[:step], run.models, FRAME_HW, run.work)
    assert computed == [] and len(fewer.table) == step  # an intact chunk covering the same images is reused


def test_off_and_real_roots_have_no_counterfactual(run: Run, tmp_path: Path) -> None:
    off = replace(run.config, counterfactuals="off")
    assert cf.marker_counterfactuals(off, run.records, run.models, FRAME_HW, tmp_path) is None
    real = replace(run.config, data=str(tmp_path))
    assert cf.marker_counterfactuals(real, run.records, run.models, FRAME_HW, tmp_path) is None


def test_tables_and_report_section(run: Run, result) -> None:
    sae = run.models.sae
    weights, biases = run.models.heads_w_hd.cpu().numpy(), run.models.heads_b_h.cpu().numpy()
    tasks = ("mass", "calcification")
    head = HeadLinear.from_weights(tasks, sae.W_dec.detach(), sae.b_dec.detach(), weights, biases)
    labels = VindrIndex.load(run.setting.data).images[["image_id", *tasks]]
    flags = pd.Series(["marker" if i % 2 == 0 else "" for i in range(sae.d_sae)])
    tables = cf.counterfactual_tables(result, head, labels, tasks, flags)
    carriers = tables["carriers"]
    assert (carriers["flags"] == np.where(carriers["latent"] % 2 == 0, "marker", "")).all()
    assert set(tables) == {"images", "shift", "aurocs", "carriers"}
    images = tables["images"]
    assert {"logit_with_calcification", "logit_without_mass", "shift_calcification"} <= set(images)
    y = labels.set_index("image_id").loc[images["image_id"], "calcification"].to_numpy()
    calc = tables["aurocs"].set_index("head").loc["calcification"]
    had = images["had_marker"].to_numpy()
    as_is = np.where(had, images["logit_with_calcification"], images["logit_without_calcification"])
    assert calc["auroc_as_is"] == pytest.approx(auroc(y, as_is))
    shift = tables["shift"].set_index(["head", "subset"])
    for h, task in enumerate(tasks):
        carriers = tables["carriers"][tables["carriers"]["head"] == task]
        sae_shift = np.mean(
            shortcut_logits(result.zbar_with_nl, head)[:, h]
            - shortcut_logits(result.zbar_without_nl, head)[:, h]
        )
        row = shift.loc[(task, "all")]
        assert carriers["contribution_change"].sum() == pytest.approx(sae_shift, abs=1e-6)
        assert row["sae_shift"] == pytest.approx(sae_shift, abs=1e-6)
        assert row["sae_shift"] + row["remainder"] == pytest.approx(row["mean"], abs=1e-9)
        assert row["latents_changed"] == len(carriers)
    section = cf.counterfactual_section(tables, n_carriers=2)
    assert section.startswith("## Marker counterfactual")
    assert cf.CARRIERS_FILE in section and "largest of" in section and "| marker |" in section
    assert f"Each of the {len(images)} analysed images" in section
    summary = cf.counterfactual_summary(tables)
    assert [s["head"] for s in summary] == list(tasks)


def test_large_runs_keep_the_mean_latents_as_memory_maps(run: Run, result, monkeypatch) -> None:
    monkeypatch.setattr(cf, "MEMMAP_BYTES", 0)
    mapped = cf.marker_counterfactuals(run.config, run.records, run.models, FRAME_HW, run.work)
    assert (
        isinstance(mapped.zbar_with_nl, np.memmap) and Path(mapped.zbar_with_nl.filename).parent == run.work
    )
    assert np.array_equal(mapped.zbar_with_nl, result.zbar_with_nl)
    assert np.array_equal(mapped.zbar_without_nl, result.zbar_without_nl)
