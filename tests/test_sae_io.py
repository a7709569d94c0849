"""SAE files: the SAELens folder layout round trip, clear refusals of broken folders, and the import of
the published Mammo-SAE state dict."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from sae_train_helpers import arch_kwargs
from safetensors.torch import load_file, save_file

from mammo_sae.sae import (
    ARCHITECTURES,
    CONFIG_FILE,
    WEIGHTS_FILE,
    SAEError,
    create_sae,
    import_mammosae,
    load_sae,
    save_sae,
)
from mammo_sae.sae.io import check_mammosae_state

D_IN, D_SAE, K = 10, 40, 3
META = {"backbone": "mammoclip-b5", "layer": "blocks.6", "store": "0123abcd", "train": {"lr": 5e-4}}


def trained(arch: str):
    sae = create_sae(arch, D_IN, D_SAE, seed=2, **arch_kwargs(arch, k=K, aux_k=4, l1_coeff=1e-3))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    for seed in range(3):  # BatchTopK: a threshold to save
        sae.loss(torch.randn(32, D_IN, generator=torch.Generator().manual_seed(seed)))
    return sae


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_round_trip_keeps_weights_hparams_threshold_and_metadata(arch: str, tmp_path: Path) -> None:
    sae = trained(arch)
    folder = save_sae(sae, tmp_path / "sae", META)
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS_FILE, CONFIG_FILE])  # no temporaries
    loaded = load_sae(folder, expect_d_in=D_IN)
    assert type(loaded) is type(sae) and loaded.hparams == sae.hparams and not loaded.training
    for name, value in sae.state_dict().items():
        if name != "threshold_updates":
            assert torch.equal(loaded.state_dict()[name], value), name
    assert loaded.metadata == META
    sae.eval()
    x = torch.randn(16, D_IN)
    torch.testing.assert_close(loaded(x)[0], sae(x)[0])


@pytest.mark.parametrize(
    ("arch", "saelens", "tensors"),
    [
        ("relu", "standard", ["W_dec", "W_enc", "b_dec", "b_enc"]),
        ("topk", "topk", ["W_dec", "W_enc", "b_dec", "b_enc"]),
        ("batchtopk", "jumprelu", ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]),
    ],
)
def test_files_use_saelens_names_and_keys(
    arch: str, saelens: str, tensors: list[str], tmp_path: Path
) -> None:
    sae = trained(arch)
    folder = save_sae(sae, tmp_path, META)
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    assert cfg["architecture"] == saelens
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"]) == (D_IN, D_SAE, "float32")
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["mammo_sae_architecture"] == arch
    assert {k: cfg["metadata"][k] for k in META} == META
    if arch == "topk":
        assert cfg["k"] == K and cfg["activation_fn_kwargs"] == {"k": K}
    weights = load_file(folder / WEIGHTS_FILE)
    assert sorted(weights) == tensors
    assert weights["W_enc"].shape == (D_IN, D_SAE) and weights["W_dec"].shape == (D_SAE, D_IN)
    if arch == "batchtopk":
        assert torch.equal(weights["threshold"], sae.threshold) and float(weights["threshold"][0]) > 0


def test_a_plain_saelens_folder_loads_and_b_dec_not_applied_to_input_is_folded(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(4)
    w = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=gen),
        "b_enc": torch.randn(D_SAE, generator=gen),
        "W_dec": torch.randn(D_SAE, D_IN, generator=gen),
        "b_dec": torch.randn(D_IN, generator=gen),
        "threshold": torch.rand(D_SAE, generator=gen),
    }
    save_file(w, tmp_path / WEIGHTS_FILE)
    cfg = {
        "architecture": "jumprelu",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "apply_b_dec_to_input": False,
    }
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    sae = load_sae(tmp_path)
    assert sae.architecture == "batchtopk" and not sae.training
    x = torch.randn(8, D_IN, generator=gen)
    pre = x @ w["W_enc"] + w["b_enc"]  # SAELens JumpReLU without b_dec on the input
    torch.testing.assert_close(sae.encode(x), pre.relu() * (pre > w["threshold"]), rtol=1e-5, atol=1e-5)


def test_broken_folders_are_refused_with_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SAEError, match="does not exist or is not a folder"):
        load_sae(tmp_path / "nowhere")
    with pytest.raises(SAEError, match=r"cfg\.json is missing"):
        load_sae(tmp_path)
    folder = save_sae(trained("relu"), tmp_path / "a", META)
    with pytest.raises(SAEError, match="takes d_in=10 features but 2048 were expected"):
        load_sae(folder, expect_d_in=2048)
    cfg_text = (folder / CONFIG_FILE).read_text()
    (folder / CONFIG_FILE).write_text(cfg_text[:-20])
    with pytest.raises(SAEError, match=r"cfg\.json is not valid JSON"):
        load_sae(folder)
    (folder / CONFIG_FILE).write_text(cfg_text)
    weights = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(weights[:100])
    with pytest.raises(SAEError, match="does not match the weights hash"):
        load_sae(folder)
    cfg = json.loads(cfg_text)
    del cfg["metadata"]["mammo_sae_weights_sha256"]
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(SAEError, match="not a readable safetensors file"):
        load_sae(folder)
    save_file({"W_enc": torch.zeros(D_IN, D_SAE), "b_enc": torch.zeros(D_SAE)}, folder / WEIGHTS_FILE)
    with pytest.raises(SAEError, match=r"missing W_dec, b_dec"):
        load_sae(folder)
    other = save_sae(create_sae("relu", D_IN + 1, D_SAE), tmp_path / "b")
    (folder / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(SAEError, match=r"W_enc has shape \(11, 40\) but cfg.json implies \(10, 40\)"):
        load_sae(folder)
    cfg["architecture"] = "gated"
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(SAEError, match="'gated' is not supported"):
        load_sae(folder)
    cfg["architecture"] = "topk"  # our metadata says relu
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(SAEError, match="metadata says architecture 'relu'"):
        load_sae(folder)
    with pytest.raises(SAEError, match="JSON-serialisable"):
        save_sae(trained("relu"), tmp_path / "c", {"bad": float("nan")})


# --- the published Mammo-SAE file ----------------------------------------------------------------------


def published_state(d: int, h: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tied = torch.randn(1, d, generator=gen)
    return {
        "tied_bias": tied,
        "pre_encoder_bias._bias_reference": tied.clone(),
        "post_decoder_bias._bias_reference": tied.clone(),
        "encoder._weight": torch.randn(1, h, d, generator=gen) / d**0.5,
        "encoder._bias": torch.randn(1, h, generator=gen) * 0.1,
        "decoder._weight": torch.randn(1, d, h, generator=gen),
    }


def test_import_of_the_published_file_reproduces_the_paper_formula(tmp_path: Path) -> None:
    state = published_state(32, 128)
    path = tmp_path / "sparse_autoencoder_final.pt"
    torch.save(state, path)
    sae = import_mammosae(path, tmp_path / "mammo-sae", {"note": "published"})
    assert sae.architecture == "relu" and (sae.d_in, sae.d_sae) == (32, 128)
    x = torch.randn(20, 32, generator=torch.Generator().manual_seed(1))
    W_enc, b_enc = state["encoder._weight"][0], state["encoder._bias"][0]  # [h, d], [h]
    W_dec, b_dec = state["decoder._weight"][0], state["tied_bias"][0]  # [d, h], [d]
    z = torch.relu((x - b_dec) @ W_enc.T + b_enc)  # z = ReLU(W_enc (x - b_dec) + b_enc)
    x_hat = z @ W_dec.T + b_dec  # x_hat = W_dec z + b_dec
    torch.testing.assert_close(sae.encode(x), z)
    torch.testing.assert_close(sae.decode(z), x_hat)
    loaded = load_sae(tmp_path / "mammo-sae", expect_d_in=32)
    torch.testing.assert_close(loaded(x)[0], x_hat)
    assert loaded.metadata["note"] == "published"
    assert loaded.metadata["source"]["file"] == path.name and len(loaded.metadata["source"]["sha256"]) == 64


def test_the_real_published_shapes_pass_the_layout_check() -> None:
    real = {
        "tied_bias": (1, 2048),
        "pre_encoder_bias._bias_reference": (1, 2048),
        "post_decoder_bias._bias_reference": (1, 2048),
        "encoder._weight": (1, 16384, 2048),
        "encoder._bias": (1, 16384),
        "decoder._weight": (1, 2048, 16384),
    }
    assert check_mammosae_state({k: torch.empty(s, device="meta") for k, s in real.items()}) == (2048, 16384)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("encoder._bias"), "missing encoder._bias"),
        (lambda s: s.update({"encoder.extra": torch.zeros(1)}), "unexpected encoder.extra"),
        (lambda s: s.update({"encoder._weight": torch.zeros(2, 128, 32)}), r"expected \(1, 128, 32\)"),
        (
            lambda s: s.update({"decoder._weight": torch.zeros(1, 32, 64)}),
            r"decoder._weight has shape \(1, 32, 64\)",
        ),
        (lambda s: s.update({"tied_bias": torch.zeros(32)}), "should be"),
        (lambda s: s["pre_encoder_bias._bias_reference"].add_(1.0), "differs from tied_bias"),
    ],
)
def test_files_of_another_layout_are_refused(change, message: str, tmp_path: Path) -> None:
    state = published_state(32, 128)
    change(state)
    torch.save(state, tmp_path / "f.pt")
    with pytest.raises(SAEError, match=message):
        import_mammosae(tmp_path / "f.pt", None)


class Payload:  # a pickle that is not just tensors: refused by weights_only loading
    def __reduce__(self):
        return (print, ("this would run on load",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_non_state_dicts_and_unsafe_pickles_are_refused(tmp_path: Path) -> None:
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(SAEError, match="not a plain state dict"):
        import_mammosae(tmp_path / "list.pt", None)
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"tied_bias": Payload()}))
    with pytest.raises(SAEError, match="could not be read as a weights-only torch file"):
        import_mammosae(tmp_path / "evil.pt", None)
    with pytest.raises(SAEError, match="does not exist"):
        import_mammosae(tmp_path / "missing.pt", None)


def test_float16_storage_keeps_the_reconstruction(tmp_path: Path) -> None:
    sae = create_sae("relu", 64, 256, seed=3)
    x = torch.randn(100, 64)
    save_sae(sae, tmp_path / "fp16", storage_dtype=torch.float16)
    small = load_sae(tmp_path / "fp16")
    assert small.dtype == torch.float32
    with torch.no_grad():
        reference, _ = sae(x)
        rounded, _ = small(x)
    assert torch.allclose(rounded, reference, atol=5e-3)
    assert (tmp_path / "fp16" / "sae_weights.safetensors").stat().st_size < 0.55 * 64 * 256 * 2 * 4
