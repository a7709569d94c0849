"""The SAE spliced into a classifier's feature map with a forward hook: the slow, literal intervention.

Inside ``sae_in_features(classifier, sae, scale_l)``, every forward pass replaces the feature map of the
backbone's head layer by ``decode(encode(x) * scale)`` token by token (plus ``x - x_hat`` when
``add_error``), then pooling and the heads run as usual. The analysis never needs this (the exact linear
shortcut in interventions.py gives the same logits from cached mean latents); it exists to prove that
shortcut equal to the real thing and to run interventions on a live image.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from mammo_sae.models import Classifier, resolve_layer
from mammo_sae.sae import SparseAutoencoder


def spliced_map(
    fmap_bchw: torch.Tensor,
    sae: SparseAutoencoder,
    scale_l: torch.Tensor | None = None,
    *,
    add_error: bool = False,
) -> torch.Tensor:
    """The feature map rebuilt by the SAE (latents scaled by ``scale_l``), same shape and dtype."""
    b, c, h, w = fmap_bchw.shape
    x_td = fmap_bchw.permute(0, 2, 3, 1).reshape(-1, c).to(sae.dtype)
    z_tl = sae.encode(x_td)
    x_hat_td = sae.decode(z_tl if scale_l is None else z_tl * scale_l.to(z_tl))
    if add_error:
        x_hat_td = x_hat_td + (x_td - sae.decode(z_tl))
    return x_hat_td.reshape(b, h, w, c).permute(0, 3, 1, 2).to(fmap_bchw.dtype)


@contextmanager
def sae_in_features(
    classifier: Classifier,
    sae: SparseAutoencoder,
    scale_l: np.ndarray | torch.Tensor | None = None,
    *,
    add_error: bool = False,
) -> Iterator[None]:
    """Replace the head-layer feature map by the SAE reconstruction while the context is open."""
    backbone = classifier.backbone
    if sae.d_in != backbone.num_features:
        from mammo_sae.sae import SAEError

        raise SAEError(
            f"the SAE takes {sae.d_in} features but {backbone.default_layer} of this backbone gives "
            f"{backbone.num_features}: use an SAE trained on this model's head layer"
        )
    scale = None if scale_l is None else torch.as_tensor(np.asarray(scale_l), dtype=sae.dtype)
    layer = resolve_layer(backbone.model, backbone.default_layer)

    def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return spliced_map(output, sae, scale, add_error=add_error)

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
