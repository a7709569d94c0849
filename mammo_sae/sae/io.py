"""SAE files: SAELens's folder layout (``sae_weights.safetensors`` + ``cfg.json``) and the import of the
published Mammo-SAE state dict. docs/sae.md describes both formats.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from mammo_sae import __version__
from mammo_sae.core.atomic import atomic_write_bytes, atomic_write_text
from mammo_sae.core.hashing import sha256_bytes, sha256_file
from mammo_sae.core.weightfiles import safetensors_bytes
from mammo_sae.sae.base import SparseAutoencoder
from mammo_sae.sae.errors import SAEError
from mammo_sae.sae.registry import architecture_names, lookup, saelens_default
from mammo_sae.sae.relu import ReLUConfig, ReLUSAE

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
TRAIN_CONFIG_FILE, CHECKPOINT_FILE = "train_config.toml", "checkpoint.pt"  # a training run's other files
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
META_ARCH, META_HPARAMS, META_VERSION, META_SHA = (
    "mammo_sae_architecture",
    "mammo_sae_hparams",
    "mammo_sae_version",
    "mammo_sae_weights_sha256",
)
# The published Mammo-SAE file (FACTS 5): key -> shape with d = d_in, h = d_sae; the leading 1 is a
# "component" axis of the library that trained it.
MAMMOSAE_KEYS = {
    "tied_bias": ("1", "d"),
    "encoder._weight": ("1", "h", "d"),
    "encoder._bias": ("1", "h"),
    "decoder._weight": ("1", "d", "h"),
}
MAMMOSAE_BIAS_COPIES = ("pre_encoder_bias._bias_reference", "post_decoder_bias._bias_reference")


def repair_hint(folder: Path) -> str:
    """How to rewrite a damaged SAE folder: from its training run's checkpoint when the folder holds one."""
    if (folder / TRAIN_CONFIG_FILE).is_file() and (folder / CHECKPOINT_FILE).is_file():
        return (
            "rewrite it from the training checkpoint: "
            f"python -m mammo_sae.train --config {folder / TRAIN_CONFIG_FILE} --resume"
        )
    return "save or import the SAE again (or rerun the command that made it)"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def saelens_config(sae: SparseAutoencoder, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``cfg.json`` of ``sae``: SAELens's fields plus ``metadata`` (the caller's, and ours)."""
    if not sae.saelens_architecture:
        raise SAEError(
            f"the {sae.architecture!r} SAE ({type(sae).__name__}) declares no SAELens architecture, so it has "
            "no SAELens file layout; set its saelens_architecture to the SAELens name it matches"
        )
    cfg: dict[str, Any] = {
        "architecture": sae.saelens_architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": _dtype_name(sae.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **sae.saelens_fields(),
    }
    cfg["metadata"] = {
        **dict(metadata or {}),
        META_ARCH: sae.architecture,
        META_HPARAMS: sae.hparams,
        META_VERSION: __version__,
    }
    return cfg


def _weights(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    shapes = sae.file_tensor_shapes(sae.d_in, sae.d_sae)
    tensors = {name: getattr(sae, name).detach().to("cpu").contiguous() for name in shapes}
    for name, shape in shapes.items():
        assert tuple(tensors[name].shape) == shape, (name, tuple(tensors[name].shape), shape)
    return tensors


def save_sae(
    sae: SparseAutoencoder,
    folder: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    storage_dtype: torch.dtype | None = None,
) -> Path:
    """Write ``folder/sae_weights.safetensors`` and ``folder/cfg.json`` (each atomically); returns folder.

    ``storage_dtype`` (e.g. ``torch.float16``) rounds the stored tensors to halve a shipped file; the SAE
    still loads in its own ``dtype`` (``cfg.json``), with the rounded values.

    ``metadata`` (JSON-serialisable: backbone, layer, store hash, training config, ...) goes under
    ``cfg["metadata"]``, beside our keys ``mammo_sae_architecture``, ``mammo_sae_hparams``,
    ``mammo_sae_version`` and ``mammo_sae_weights_sha256`` (which ``load_sae`` checks).
    """
    folder = Path(folder)
    cfg = saelens_config(sae, metadata)
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SAEError(f"save_sae: metadata must be JSON-serialisable (no NaN): {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    tensors = _weights(sae)
    if storage_dtype is not None:
        tensors = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    data = safetensors_bytes(tensors, metadata={"format": "pt"})
    atomic_write_bytes(folder / WEIGHTS_FILE, data)
    cfg["metadata"][META_SHA] = sha256_bytes(data)
    atomic_write_text(folder / CONFIG_FILE, json.dumps(cfg, indent=2, allow_nan=False) + "\n")
    return folder


# --- loading ------------------------------------------------------------------------------------------


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise SAEError(
            f"{path} is missing: an SAE folder holds {CONFIG_FILE} and {WEIGHTS_FILE} (save_sae writes "
            "one; import_mammosae converts the published Mammo-SAE file)"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SAEError(
            f"{path} is not valid JSON ({exc}): the folder is damaged; {repair_hint(folder)}"
        ) from exc
    if not isinstance(cfg, dict):
        raise SAEError(f"{path} must hold a JSON object; save or import the SAE again")
    return cfg


def _config_int(cfg: Mapping[str, Any], key: str, path: Path) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SAEError(f"{path}: {key!r} must be a positive integer, got {value!r}; save the SAE again")
    return value


def _resolve_architecture(cfg: Mapping[str, Any], meta: Mapping[str, Any], path: Path) -> str:
    """Our architecture of a ``cfg.json``: its metadata's name, else the default for its SAELens name."""
    saelens = cfg.get("architecture", "standard")
    supported = sorted({lookup(name).cls.saelens_architecture or "" for name in architecture_names()} - {""})
    if saelens not in supported:
        raise SAEError(
            f"{path}: SAELens architecture {saelens!r} is not supported (supported: {', '.join(supported)})"
        )
    if META_ARCH not in meta:
        ours = saelens_default(saelens)
        if ours is None:
            raise SAEError(
                f"{path}: no architecture reads SAELens {saelens!r} files without mammo-sae metadata"
            )
        return ours
    ours = meta[META_ARCH]
    try:
        cls = lookup(ours).cls
    except SAEError as error:
        raise SAEError(
            f"{path}: {error}; the SAE was saved by code that registered {ours!r}: import (register) that "
            "architecture before loading"
        ) from None
    if cls.saelens_architecture != saelens:
        raise SAEError(
            f"{path}: metadata says architecture {ours!r} but the file is a SAELens {saelens!r} SAE; "
            "the config was edited or mixed up: save the SAE again"
        )
    return ours


def load_sae(
    folder: str | os.PathLike[str], *, expect_d_in: int | None = None, device: torch.device | str = "cpu"
) -> SparseAutoencoder:
    """Read an SAE folder (ours, of any registered architecture, or SAELens's ``standard`` / ``topk`` /
    ``jumprelu``), in eval mode.

    Checks the config, the weights' names and shapes, our weights hash when present, and ``d_in``
    against ``expect_d_in``; anything wrong raises SAEError naming the file. The caller's metadata is on
    ``sae.metadata``.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise SAEError(
            f"SAE folder {str(folder)!r} does not exist or is not a folder; give the folder that holds "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    cfg = _read_config(folder)
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    meta = cfg.get("metadata") or {}
    if not isinstance(meta, dict):
        raise SAEError(f"{cfg_path}: 'metadata' must be a JSON object")
    d_in, d_sae = _config_int(cfg, "d_in", cfg_path), _config_int(cfg, "d_sae", cfg_path)
    if expect_d_in is not None and d_in != expect_d_in:
        raise SAEError(
            f"the SAE in {folder} takes d_in={d_in} features but {expect_d_in} were expected: use an SAE "
            "trained on this backbone layer (or train one on this store)"
        )
    arch = _resolve_architecture(cfg, meta, cfg_path)
    dtype_name = str(cfg.get("dtype", "float32")).removeprefix("torch.")
    if dtype_name not in DTYPES:
        raise SAEError(f"{cfg_path}: dtype {cfg.get('dtype')!r} is not one of {', '.join(DTYPES)}")
    if cfg.get("normalize_activations", "none") not in ("none", None, False):
        raise SAEError(
            f"{cfg_path}: normalize_activations={cfg['normalize_activations']!r} needs a run-time input "
            "normalisation this package does not apply; fold it into the weights first"
        )
    entry = lookup(arch)
    hparams = meta.get(META_HPARAMS) or {}
    if not isinstance(hparams, dict):
        raise SAEError(f"{cfg_path}: metadata {META_HPARAMS!r} must be a JSON object; save the SAE again")
    try:
        hparams = entry.cfg_cls.complete_from_saelens(dict(hparams), cfg, d_sae)
        sae_cfg = entry.cfg_cls.from_hparams(d_in, d_sae, hparams)
    except (SAEError, TypeError) as exc:
        raise SAEError(f"{cfg_path}: {exc}") from exc
    if not weights_path.is_file():
        raise SAEError(f"{weights_path} is missing: the SAE folder is incomplete; {repair_hint(folder)}")
    if META_SHA in meta and sha256_file(weights_path) != meta[META_SHA]:
        raise SAEError(
            f"{weights_path} does not match the weights hash in {cfg_path}: the two files come from "
            f"different saves (or one is damaged); {repair_hint(folder)}"
        )
    tensors = _read_weights(weights_path, entry.cls.file_tensor_shapes(d_in, d_sae))
    sae = entry.cls(sae_cfg, dtype=DTYPES[dtype_name], device="meta")
    sae.to_empty(device=device)
    with torch.no_grad():
        for name, tensor in tensors.items():
            getattr(sae, name).copy_(tensor)
        if cfg.get("apply_b_dec_to_input", True) is False:  # pre = x W_enc + b_enc: fold into our form
            sae.b_enc.add_(sae.b_dec @ sae.W_enc)
        sae.after_load()
    sae.eval()
    sae.metadata = {k: v for k, v in meta.items() if not k.startswith("mammo_sae_")}
    return sae


def _read_weights(path: Path, expected: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            keys = set(handle.keys())
            missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
            if missing or extra:
                raise SAEError(
                    f"{path} holds tensors {sorted(keys)} but this SAE needs exactly {sorted(expected)}"
                    f"{' (missing ' + ', '.join(missing) + ')' if missing else ''}"
                    f"{' (unexpected ' + ', '.join(extra) + ')' if extra else ''}; save the SAE again"
                )
            tensors = {key: handle.get_tensor(key) for key in expected}
    except SafetensorError as exc:
        raise SAEError(
            f"{path} is not a readable safetensors file ({exc}); {repair_hint(path.parent)}"
        ) from exc
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise SAEError(
                f"{path}: {key} has shape {tuple(tensors[key].shape)} but cfg.json implies {shape}; "
                "the two files do not belong together: save the SAE again"
            )
        if not tensors[key].is_floating_point():
            raise SAEError(f"{path}: {key} is {tensors[key].dtype}, not a floating-point tensor")
    return tensors


# --- the published Mammo-SAE file --------------------------------------------------------------------


def check_mammosae_state(state: Any, source: str = "the state dict") -> tuple[int, int]:
    """(d_in, d_sae) of a published-format Mammo-SAE state dict; SAEError naming what does not fit.

    Only shapes and names are read, so meta tensors work (a check of the real 2048 x 16384 layout).
    """
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SAEError(
            f"{source} is not a plain state dict of tensors (got {type(state).__name__}); the published "
            "Mammo-SAE file sparse_autoencoder_final.pt is one"
        )
    keys = set(state)
    missing = sorted(set(MAMMOSAE_KEYS) - keys)
    extra = sorted(keys - set(MAMMOSAE_KEYS) - set(MAMMOSAE_BIAS_COPIES))
    if missing or extra:
        raise SAEError(
            f"{source} is not the published Mammo-SAE layout: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(extra)}" if extra else "",
                )
                if part
            )
            + f" (expected {', '.join(MAMMOSAE_KEYS)} and optionally {', '.join(MAMMOSAE_BIAS_COPIES)})"
        )
    tied = tuple(state["tied_bias"].shape)
    weight = tuple(state["encoder._weight"].shape)
    if len(tied) != 2 or len(weight) != 3:
        raise SAEError(
            f"{source}: tied_bias {tied} / encoder._weight {weight} should be (1, d) / (1, d_sae, d)"
        )
    sizes = {"1": 1, "d": tied[1], "h": weight[1]}
    for key, spec in MAMMOSAE_KEYS.items():
        want = tuple(sizes[s] for s in spec)
        if tuple(state[key].shape) != want:
            raise SAEError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, expected {want} "
                f"(d_in={sizes['d']}, d_sae={sizes['h']}, one component)"
            )
    for key in MAMMOSAE_BIAS_COPIES:
        if key in state and tuple(state[key].shape) != tied:
            raise SAEError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tied} like tied_bias"
            )
    if any(not state[key].is_floating_point() for key in keys):
        raise SAEError(f"{source}: every tensor must be floating point")
    return sizes["d"], sizes["h"]


def sae_from_mammosae_state(state: Mapping[str, torch.Tensor], source: str = "the state dict") -> ReLUSAE:
    """Our ReLU SAE with the published weights: W_enc = encoder._weight[0]^T, b_enc = encoder._bias[0],
    W_dec = decoder._weight[0]^T, b_dec = tied_bias[0]."""
    d_in, d_sae = check_mammosae_state(state, source)
    tied = state["tied_bias"]
    for key in MAMMOSAE_BIAS_COPIES:
        if key in state and not torch.equal(state[key], tied):
            raise SAEError(
                f"{source}: {key} differs from tied_bias, but the Mammo-SAE formula subtracts and adds one "
                "bias; this file is not the released tied-bias SAE"
            )
    sae = ReLUSAE(ReLUConfig(d_in=d_in, d_sae=d_sae), device="meta").to_empty(device="cpu")
    with torch.no_grad():
        sae.b_dec.copy_(tied[0])
        sae.W_enc.copy_(state["encoder._weight"][0].T)
        sae.b_enc.copy_(state["encoder._bias"][0])
        sae.W_dec.copy_(state["decoder._weight"][0].T)
    sae.eval()
    return sae


def import_mammosae(
    path: str | os.PathLike[str],
    out_folder: str | os.PathLike[str] | None,
    metadata: Mapping[str, Any] | None = None,
) -> ReLUSAE:
    """Convert the published ``sparse_autoencoder_final.pt`` to our ReLU SAE; saved to ``out_folder``
    (unless None) with ``metadata`` plus the source file's name and sha256."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SAEError(
            f"Mammo-SAE file {str(path)!r} does not exist; give the path of sparse_autoencoder_final.pt"
        )
    state = _torch_load(file)
    sae = sae_from_mammosae_state(state, str(file))
    if out_folder is not None:
        source = {
            "file": file.name,
            "sha256": sha256_file(file),
            "format": "mammo-sae sparse_autoencoder_final.pt",
        }
        save_sae(sae, out_folder, {**dict(metadata or {}), "source": source})
    return sae


def _torch_load(file: Path) -> Any:
    errors = []
    for mmap in (True, False):  # mmap reads the 0.5 GB file lazily; old (non-zip) files need mmap=False
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:  # the unpickler raises many types for bad or foreign files
            errors.append(exc)
    raise SAEError(
        f"{file} could not be read as a weights-only torch file ({errors[-1]}); the published Mammo-SAE file "
        "is a plain state dict of tensors (if it is damaged, download it again)"
    ) from errors[-1]
