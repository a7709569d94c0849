"""Per-token heads for box supervision (``--box-weight``); neither is saved with the classifier.

- ``separate``: a 1 x 1 convolution of its own learns which tokens overlap each task's boxes. It shapes the
  backbone's features only; the classification head stays free to read evidence from anywhere.
- ``tied``: the classification head itself scores every token (``w . f_t`` plus a bias of its own), so the
  boxes teach the head where its evidence may come from. The image logit is the mean of these token
  scores plus the head's bias, so the classifier's evidence is pulled towards the lesions instead of being
  spread over the whole feature map (``docs/demo.md`` measures how far).
"""

from __future__ import annotations

import torch
from torch import nn

from mammo_sae.models import Classifier

BOX_HEADS = ("separate", "tied")


class TiedTokenHead(nn.Module):
    """Token logits [B, tasks, H, W] from the classifier's own (single-output) heads and a bias per task."""

    def __init__(self, classifier: Classifier, tasks: tuple[str, ...]) -> None:
        super().__init__()
        for task in tasks:
            assert classifier.head(task).out_features == 1, "box supervision needs binary heads"
        # a plain attribute, not a submodule: the heads' weights belong to (and are saved with) the classifier
        self.__dict__["classifier"] = classifier
        self.tasks = tasks
        self.bias = nn.Parameter(torch.zeros(len(tasks)))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([self.classifier.head(task).weight for task in self.tasks])  # [tasks, C]
        return (
            torch.einsum("bchw,kc->bkhw", fmap, weight.to(fmap.dtype))
            + self.bias.to(fmap.dtype)[:, None, None]
        )


def token_head(kind: str, classifier: Classifier, tasks: tuple[str, ...]) -> nn.Module:
    """The per-token head of a box-supervised run (see the module docstring for the two kinds)."""
    if kind == "separate":
        return nn.Conv2d(classifier.backbone.num_features, len(tasks), 1)
    if kind == "tied":
        return TiedTokenHead(classifier, tasks)
    raise ValueError(f"box head must be one of {BOX_HEADS}, got {kind!r}")
