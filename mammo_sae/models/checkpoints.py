"""Weight files in: torch pickles read without trusting them, safetensors, hashes, nested state dicts.

``torch.load`` with ``weights_only=False`` runs arbitrary code from the file. Mammo-CLIP's files are
plain ``torch.save`` zips holding tensors, dicts and (downstream files) numpy arrays, so they are read
with ``weights_only=True`` plus an allow-list of the few numpy reconstructors such files need. A file
that needs anything else is refused with the names of the globals it wants; a user who trusts it can
pass ``trust_pickle=True`` (or set ``MAMMO_SAE_TRUST_PICKLE=1``) to fall back to a full unpickle.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from mammo_sae.core.errors import ModelError

TRUST_ENV = "MAMMO_SAE_TRUST_PICKLE"
SHOWN_KEYS = 5  # how many keys an error message lists before summarising with a count

_np_core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core


def _numpy_global(name: str) -> Callable | None:
    """The numpy object behind a pickle global that is safe for weights-only loading, else None."""
    fixed: dict[str, Callable] = {
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
        "numpy._core.multiarray._reconstruct": _np_core.multiarray._reconstruct,
        "numpy.core.multiarray._reconstruct": _np_core.multiarray._reconstruct,
        "numpy._core.multiarray.scalar": _np_core.multiarray.scalar,
        "numpy.core.multiarray.scalar": _np_core.multiarray.scalar,
    }
    if name in fixed:
        return fixed[name]
    module, _, attr = name.rpartition(".")
    if module == "numpy.dtypes":  # numpy 2 pickles dtypes as their classes, e.g. numpy.dtypes.Float32DType
        candidate = getattr(getattr(np, "dtypes", None), attr, None)
        if isinstance(candidate, type) and issubclass(candidate, np.dtype):
            return candidate
    return None


def _numpy_dtype_classes() -> list[tuple[Callable, str]]:
    """numpy 2's per-dtype classes (``numpy.dtypes.Float32DType``, ...), which a pickled dtype becomes."""
    dtypes = getattr(np, "dtypes", None)
    classes = [getattr(dtypes, name) for name in dir(dtypes)] if dtypes else []
    return [
        (c, f"numpy.dtypes.{c.__name__}") for c in classes if isinstance(c, type) and issubclass(c, np.dtype)
    ]


def trust_from_env(trust_pickle: bool | None) -> bool:
    if trust_pickle is not None:
        return trust_pickle
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        where = "is a folder" if file.is_dir() else "does not exist"
        raise ModelError(f"{what} {str(path)!r} {where}; give the path of the file itself")
    return file


def read_torch_file(path: str | os.PathLike[str], *, trust_pickle: bool | None = None) -> Any:
    """Load a ``torch.save`` file on the CPU, refusing pickled code unless the user trusts the file.

    Zip-format files are memory-mapped, so the parts not used (optimiser state, text encoder) are
    never read into memory.
    """
    file = existing_file(path, "checkpoint")
    is_zip = zipfile.is_zipfile(file)
    if not is_zip:
        with open(file, "rb") as handle:
            if handle.read(1) != b"\x80":  # every pickle protocol >= 2 starts with PROTO
                raise ModelError(f"{file} is not a readable torch.save file (neither a zip nor a pickle)")
    if trust_from_env(trust_pickle):
        return _load(file, is_zip, weights_only=False)
    allowed: list[tuple[Callable, str]] = []
    if is_zip:
        try:
            wanted = torch.serialization.get_unsafe_globals_in_checkpoint(str(file))
        except Exception as exc:  # a damaged zip or a pickle the scanner cannot parse
            raise ModelError(f"{file} is not a readable torch.save file ({exc})") from exc
        refused = [name for name in wanted if _numpy_global(name) is None]
        if refused:
            raise ModelError(
                f"{file} needs Python objects beyond tensors, dicts and numpy arrays to load: "
                f"{', '.join(refused[:SHOWN_KEYS])}{' ...' if len(refused) > SHOWN_KEYS else ''}. "
                "Loading it runs code from the file; only if you trust its source, pass "
                f"trust_pickle=True or set {TRUST_ENV}=1"
            )
        allowed = [(_numpy_global(name), name) for name in wanted]  # type: ignore[misc]
        if any(name.startswith("numpy.") for name in wanted):
            allowed += _numpy_dtype_classes()  # built while unpickling a dtype, so the scan cannot see them
    with torch.serialization.safe_globals(allowed):
        return _load(file, is_zip, weights_only=True)


def _load(file: Path, is_zip: bool, *, weights_only: bool) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=weights_only, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "Unpickler error" in line or "global" in line.lower()), None)
        reason = reason or (lines[0] if lines else type(exc).__name__)
        raise ModelError(
            f"{file} could not be read as weights only ({reason}). If you trust its source, pass "
            f"trust_pickle=True or set {TRUST_ENV}=1"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(f"{file} is not a readable torch.save file ({exc})") from exc


def read_weights_file(path: str | os.PathLike[str], *, trust_pickle: bool | None = None) -> Any:
    """A ``.safetensors`` file as a state dict, or anything else through :func:`read_torch_file`."""
    file = existing_file(path, "weights file")
    if is_safetensors(file):
        try:
            return load_safetensors(str(file), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{file} is not a readable safetensors file ({exc})") from exc
    return read_torch_file(file, trust_pickle=trust_pickle)


def is_safetensors(path: str | os.PathLike[str]) -> bool:
    """True when the file starts like safetensors: an 8-byte header length, then a JSON object."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= size <= os.path.getsize(path) - 8


def find_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict in a loaded weights file: the object itself or its ``state_dict``/``model`` entry."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict", "module"):
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
    found = f"keys {describe_keys(list(obj))}" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
    raise ModelError(
        f"{source} holds no state dict (a mapping of names to tensors, possibly under 'state_dict' or "
        f"'model'); found {found}"
    )


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def describe_keys(keys: list[str], limit: int = SHOWN_KEYS) -> str:
    """``'a', 'b', 'c' (+12 more)``: the first few keys of a long list and how many were left out."""
    shown = ", ".join(repr(k) for k in keys[:limit])
    rest = len(keys) - limit
    return f"{shown} (+{rest} more)" if rest > 0 else shown or "none"


def key_prefixes(keys: list[str]) -> list[str]:
    """The distinct first name components (``image_encoder``, ``text_encoder``, ...) of state-dict keys."""
    return sorted({k.split(".", 1)[0] for k in keys})


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    source: str,
    *,
    optional: frozenset[str] = frozenset(),
    hint: str = "",
) -> None:
    """Raise a ModelError naming missing keys, unexpected keys and shape mismatches, if any."""
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {describe_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {describe_keys(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {'; '.join(mismatched[:3])}")
    if problems:
        raise ModelError(f"{source} does not fit: {'; '.join(problems)}.{' ' + hint if hint else ''}")
