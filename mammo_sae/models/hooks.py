"""Named layers: list them, resolve a name with a helpful error, read any layer's output with a hook.

A model that knows its own layer names (:class:`~mammo_sae.models.Backbone`,
:class:`~mammo_sae.models.Classifier`) provides ``layer_names()`` and ``get_layer(name)``; any other
``nn.Module`` is addressed by its ``named_modules()`` names.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from mammo_sae.core.errors import ModelError

SUGGESTIONS = 5


class _Captured(Exception):
    """Raised by the capture hook to stop the forward once the wanted output is in hand."""


def layer_names(module: nn.Module) -> list[str]:
    """Every hookable layer name of ``module``, in registration order."""
    if hasattr(module, "layer_names"):
        return list(module.layer_names())
    return [name for name, _ in module.named_modules() if name]


def unknown_layer(name: str, names: list[str]) -> ModelError:
    """The error for a layer name that is not in ``names``: close matches and how many names exist."""
    close = difflib.get_close_matches(name, names, n=SUGGESTIONS, cutoff=0.6)
    if not close:  # names are long dotted paths: also offer those that start like the request
        stem = name.rsplit(".", 1)[0]
        close = [n for n in names if n.startswith(stem)][:SUGGESTIONS]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(repr(n) for n in names[:8])
    return ModelError(
        f"unknown layer {name!r}{hint} The model has {len(names)} named layers ({shown}, ...); "
        "list them all with layer_names()"
    )


def resolve_layer(module: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; ModelError with close matches when there is none."""
    if hasattr(module, "get_layer"):
        return module.get_layer(name)
    found = dict(module.named_modules()).get(name) if name else None
    if found is None:
        raise unknown_layer(name, layer_names(module))
    return found


def capture_layer(module: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output of layer ``layer`` when ``module`` runs on ``x`` (its first call, if it runs twice).

    A forward hook takes the output and stops the forward right there, so later layers cost nothing and
    no later in-place operation can change the captured tensor. The hook is removed even on error. The
    caller's grad mode applies (wrap in ``torch.no_grad()`` for inference).
    """
    target = resolve_layer(module, layer)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        captured.append(output)
        raise _Captured

    handle = target.register_forward_hook(hook)
    try:
        module(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ModelError(f"layer {layer!r} did not run in the forward pass of {type(module).__name__}")
    output = captured[0]
    if not isinstance(output, torch.Tensor):
        raise ModelError(f"layer {layer!r} returns a {type(output).__name__}, not a tensor")
    return output


def feature_layers(module: nn.Module) -> list[str]:
    """The layers worth reading features from: one per stage resolution timm reports, then the head output.

    For Mammo-CLIP B5: ``blocks.0, blocks.1, blocks.2, blocks.4, blocks.6, bn2``; the last is always
    the module's ``default_layer``.
    """
    if hasattr(module, "feature_layers"):
        return list(module.feature_layers())
    return layer_names(module)[-1:]
