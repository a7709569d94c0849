"""Exact token evidence: every map sums to its logit minus the bias, and agrees with a spliced forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_fixtures import Setting, model_inputs

from mammo_sae.analysis.evidence import (
    EvidenceError,
    feature_evidence,
    image_evidence,
    latent_evidence,
    sae_evidence,
)
from mammo_sae.analysis.splice import sae_in_features
from mammo_sae.bundle import Bundle
from mammo_sae.models import load_classifier
from mammo_sae.sae import load_sae


def test_the_split_maps_add_up_by_hand() -> None:
    rng = np.random.default_rng(0)
    fmap_dhw, weight_hd = rng.normal(size=(5, 3, 2)), rng.normal(size=(2, 5))
    pooled_d = fmap_dhw.mean(axis=(1, 2))
    assert np.allclose(feature_evidence(fmap_dhw, weight_hd).sum(axis=(1, 2)), weight_hd @ pooled_d)
    z_tl = np.maximum(rng.normal(size=(6, 4)), 0)
    effect_lh, decoder_bias_h = rng.normal(size=(4, 2)), rng.normal(size=2)
    sae_map = sae_evidence(z_tl, (3, 2), effect_lh, decoder_bias_h)
    assert np.allclose(sae_map.sum(axis=(1, 2)), z_tl.mean(axis=0) @ effect_lh + decoder_bias_h)
    per_latent = sum(latent_evidence(z_tl, (3, 2), effect_lh, i) for i in range(4))
    assert np.allclose(per_latent + decoder_bias_h[:, None, None] / 6, sae_map)
    assert latent_evidence(z_tl, (3, 2), effect_lh, 1)[0, 2, 1] == pytest.approx(
        z_tl[5, 1] * effect_lh[1, 0] / 6
    )
    with pytest.raises(EvidenceError, match="do not fit"):
        feature_evidence(fmap_dhw, weight_hd[:, :4])
    with pytest.raises(EvidenceError, match="outside"):
        latent_evidence(z_tl, (3, 2), effect_lh, 4)


def test_evidence_maps_sum_to_the_logits_of_a_plain_and_a_spliced_forward(
    analysis_setting: Setting, analysis_bundle_path
) -> None:
    classifier = load_classifier(analysis_setting.classifier)
    sae = load_sae(analysis_setting.sae)
    bundle = Bundle.open(analysis_bundle_path)
    tasks = tuple(bundle.tasks)
    pixels = model_inputs(analysis_setting, bundle, 3)
    with torch.inference_mode():
        plain = classifier(pixels)
        with sae_in_features(classifier, sae):
            spliced = classifier(pixels)
    for i in range(len(pixels)):
        maps = image_evidence(classifier, sae, pixels[i], tasks)
        assert maps.grid == bundle.codes.grid
        original = np.array([plain[t][i, 0].item() for t in tasks])
        with_sae = np.array([spliced[t][i, 0].item() for t in tasks])
        assert np.abs(maps.logits("original") - original).max() <= 1e-4
        assert np.abs(maps.logits("sae") - with_sae).max() <= 1e-4
        # the error term closes the gap token by token, and the latents rebuild the SAE map
        assert np.allclose((maps.sae_hgw + maps.error_hgw), maps.original_hgw)
        for h, task in enumerate(tasks):
            active = np.flatnonzero(maps.z_tl.any(axis=0))
            rebuilt = sum(maps.latent(task, int(latent)) for latent in active)
            bias_share = (maps.sae_hgw[h] - rebuilt).ravel()
            assert np.allclose(bias_share, bias_share[0], atol=1e-9), (
                "the rest is the decoder bias, spread evenly"
            )
        # the stored bundle logits are the same numbers
        row = bundle.images.iloc[i]
        stored = np.array([row[f"logit_{t}_sae"] for t in tasks])
        assert np.abs(maps.logits("sae") - stored).max() <= 1e-3
