"""Classification heads on a backbone: pool + linear per task, as Mammo-CLIP's downstream models.

``forward`` = ``forward_head(forward_features(x))``, and the head is linear after a mean pool, so an
SAE reconstruction can replace the feature map between the two halves. Two file formats load:

- Mammo-CLIP downstream ``.pth`` files (``{model, predictions, epoch, auroc|accuracy, ...}``; keys
  ``image_encoder.*`` + ``classifier.classification_head.{weight,bias}``). The task is not in the file:
  it comes from ``task=`` or a ``mass``/``calcification``/``density`` folder in the path.
- The project's own ``.safetensors`` file (:func:`save_classifier`): every weight (backbone under
  ``backbone.``, heads under ``heads.<task>.``) and a JSON header; see ``docs/models.md``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from mammo_sae.core.atomic import atomic_write_bytes
from mammo_sae.core.errors import ModelError
from mammo_sae.core.hashing import sha256_file
from mammo_sae.core.weightfiles import safetensors_bytes
from mammo_sae.models import mammoclip
from mammo_sae.models.backbones import Backbone, build_architecture
from mammo_sae.models.checkpoints import (
    check_state_dict,
    describe_keys,
    existing_file,
    is_safetensors,
    key_prefixes,
    read_torch_file,
)
from mammo_sae.models.hooks import unknown_layer

TaskKind = Literal["binary", "multiclass"]
FORMAT = "mammo-sae-classifier"
FORMAT_VERSION = 1
DROPOUT = 0.4  # Mammo-CLIP's head dropout (inactive in eval)
HEAD_PREFIX = "classifier.classification_head."
# Mammo-CLIP's downstream tasks and their output widths (FACTS 2).
KNOWN_TASKS: dict[str, int] = {"mass": 1, "calcification": 1, "density": 4}
DEFAULT_CLASS_NAMES: dict[str, tuple[str, ...]] = {"density": ("A", "B", "C", "D")}
_TASK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _kind_of(outputs: int) -> TaskKind:
    return "binary" if outputs == 1 else "multiclass"


def _default_class_names(task: str, outputs: int) -> tuple[str, ...]:
    if task in DEFAULT_CLASS_NAMES and len(DEFAULT_CLASS_NAMES[task]) == outputs:
        return DEFAULT_CLASS_NAMES[task]
    return ("negative", "positive") if outputs == 1 else tuple(str(i) for i in range(outputs))


class Classifier(nn.Module):
    """A backbone with one linear head per task on the mean-pooled feature map.

    Binary tasks have one logit (sigmoid), multiclass tasks one per class (softmax).
    """

    def __init__(
        self,
        backbone: Backbone,
        heads: Mapping[str, nn.Linear],
        *,
        class_names: Mapping[str, Sequence[str]] | None = None,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        if not heads:
            raise ModelError("a classifier needs at least one task head")
        for task, head in heads.items():
            if not _TASK_NAME.match(task):
                raise ModelError(f"task name {task!r} must be letters, digits, '_' or '-'")
            if head.in_features != backbone.num_features:
                raise ModelError(
                    f"head {task!r} takes {head.in_features} features but the backbone gives "
                    f"{backbone.num_features}"
                )
        self.backbone = backbone
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(dict(heads))
        names = dict(class_names or {})
        self.class_names: dict[str, tuple[str, ...]] = {}
        for task, head in heads.items():
            given = tuple(names.get(task) or _default_class_names(task, head.out_features))
            wanted = 2 if head.out_features == 1 else head.out_features
            if len(given) != wanted:
                raise ModelError(f"task {task!r} needs {wanted} class names, got {list(given)}")
            self.class_names[task] = given
        self.eval()

    @classmethod
    def create(
        cls,
        backbone: Backbone,
        tasks: Mapping[str, int] | Sequence[str],
        *,
        class_names: Mapping[str, Sequence[str]] | None = None,
        dropout: float = DROPOUT,
    ) -> Classifier:
        """New, randomly initialised heads: ``tasks`` maps task -> outputs (1 = binary), or lists known tasks."""
        if not isinstance(tasks, Mapping):
            unknown = [t for t in tasks if t not in KNOWN_TASKS]
            if unknown:
                raise ModelError(f"give the number of outputs for {unknown} (tasks={{name: outputs}})")
            tasks = {t: KNOWN_TASKS[t] for t in tasks}
        heads = {}
        for task, outputs in tasks.items():
            if int(outputs) < 1:
                raise ModelError(f"task {task!r} needs at least one output, got {outputs}")
            heads[task] = nn.Linear(backbone.num_features, int(outputs))
        return cls(backbone, heads, class_names=class_names, dropout=dropout)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.heads.keys())

    def head(self, task: str) -> nn.Linear:
        if task not in self.heads:
            raise ModelError(f"no head for task {task!r}; this classifier has {list(self.tasks)}")
        return self.heads[task]

    def task_kind(self, task: str) -> TaskKind:
        return _kind_of(self.head(task).out_features)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C): the mean over all positions."""
        return self.global_pool(fmap).flatten(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, fmap: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task from a feature map: (B, 1) for binary tasks, (B, classes) for multiclass."""
        pooled = self.dropout(self.pool(fmap))
        return {task: head(pooled) for task, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))

    def probabilities(self, logits: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sigmoid of binary logits (B, 1), softmax of multiclass logits (B, classes)."""
        return {
            task: torch.sigmoid(value) if self.task_kind(task) == "binary" else torch.softmax(value, dim=-1)
            for task, value in logits.items()
        }

    def layer_names(self) -> list[str]:
        """The backbone's layer names, then ``heads.<task>`` (the logits)."""
        return [*self.backbone.layer_names(), *(f"heads.{task}" for task in self.tasks)]

    def get_layer(self, name: str) -> nn.Module:
        task = name.removeprefix("heads.")
        if name.startswith("heads.") and task in self.heads:
            return self.heads[task]
        if name in set(self.backbone.layer_names()):
            return self.backbone.get_layer(name)
        raise unknown_layer(name, self.layer_names())

    def feature_layers(self) -> list[str]:
        return self.backbone.feature_layers()

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}"


def stacked_heads(
    classifiers: Sequence[Classifier], tasks: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """[tasks, d] weights and [tasks] biases (float64) of binary heads, in ``tasks`` order, each taken from the
    first classifier that has it."""
    weights, biases = [], []
    for task in tasks:
        head = next(c.head(task) for c in classifiers if task in c.tasks)
        weights.append(head.weight.detach().double().reshape(-1))
        biases.append(head.bias.detach().double().reshape(()))
    return torch.stack(weights), torch.stack(biases)


def task_from_path(path: str | os.PathLike[str]) -> str | None:
    """The task named by the nearest ``mass``/``calcification``/``density`` folder of a path, or None."""
    for part in reversed(Path(path).parts[:-1]):
        if part.lower() in KNOWN_TASKS:
            return part.lower()
    return None


def load_classifier(
    path: str | os.PathLike[str],
    task: str | None = None,
    *,
    backbone: Backbone | None = None,
    trust_pickle: bool | None = None,
) -> Classifier:
    """A classifier from the project's safetensors file or a Mammo-CLIP downstream ``.pth``, in eval mode.

    Downstream files carry their own (fine-tuned) encoder, which is used; ``backbone`` is only for a
    file without ``image_encoder.*`` weights. ``task`` names a downstream file's single head (else the
    path must contain a ``mass``, ``calcification`` or ``density`` folder).
    """
    file = existing_file(path, "classifier file")
    if is_safetensors(file):
        classifier = _load_project_file(file)
        if task is not None and task not in classifier.tasks:
            raise ModelError(f"{file} has heads {list(classifier.tasks)}, not {task!r}")
        return classifier
    return _load_downstream(file, str(path), task, backbone, trust_pickle)


def _load_downstream(
    file: Path, given: str, task: str | None, backbone: Backbone | None, trust_pickle: bool | None
) -> Classifier:
    checkpoint = read_torch_file(file, trust_pickle=trust_pickle)
    state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or f"{HEAD_PREFIX}weight" not in state:
        if not isinstance(checkpoint, Mapping):
            found = f"a {type(checkpoint).__name__}"
        elif not isinstance(state, Mapping):
            found = f"top-level keys {describe_keys([str(k) for k in checkpoint])}"
        else:
            found = f"'model' keys with prefixes {', '.join(key_prefixes([str(k) for k in state]))}"
        raise ModelError(
            f"{file} is not a Mammo-CLIP downstream classifier: expected a dict whose 'model' state dict "
            f"holds '{HEAD_PREFIX}weight' and image_encoder.* tensors; found {found}"
        )
    head_keys = (f"{HEAD_PREFIX}weight", f"{HEAD_PREFIX}bias")
    unexpected = [k for k in state if not (str(k).startswith(mammoclip.ENCODER_PREFIX) or k in head_keys)]
    if unexpected:
        raise ModelError(f"{file}: unexpected keys in a downstream classifier: {describe_keys(unexpected)}")
    weight, bias = state[f"{HEAD_PREFIX}weight"], state.get(f"{HEAD_PREFIX}bias")
    if weight.ndim != 2 or bias is None or tuple(bias.shape) != (weight.shape[0],):
        raise ModelError(f"{file}: the classification head must be a Linear layer with weight and bias")
    task = task or task_from_path(file)
    if task is None:
        raise ModelError(
            f"cannot tell the task of {file}: pass task='mass', 'calcification' or 'density' (Mammo-CLIP "
            "files do not record it; their folders usually do)"
        )
    outputs = int(weight.shape[0])
    if task in KNOWN_TASKS and KNOWN_TASKS[task] != outputs:
        raise ModelError(f"{file}: a {task} head has {KNOWN_TASKS[task]} outputs, this one has {outputs}")
    if any(str(k).startswith(mammoclip.ENCODER_PREFIX) for k in state):
        encoder = mammoclip.encoder_state(checkpoint, str(file))
        arch = mammoclip.infer_arch(encoder, str(file))
        backbone = build_architecture(f"{arch.kind}:{given}")
        mammoclip.load_encoder_weights(backbone.model, arch, encoder, str(file))
        backbone.weights_sha256 = sha256_file(file)
    elif backbone is None:
        raise ModelError(f"{file} holds no image_encoder.* weights; pass the backbone it was trained on")
    head = nn.Linear(int(weight.shape[1]), outputs)
    if head.in_features != backbone.num_features:
        raise ModelError(
            f"{file}: the head takes {head.in_features} features, the backbone gives {backbone.num_features}"
        )
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return Classifier(backbone, {task: head})


def save_classifier(
    classifier: Classifier, path: str | os.PathLike[str], *, storage_dtype: torch.dtype | None = None
) -> None:
    """Write every weight and the metadata needed to rebuild ``classifier`` to one safetensors file, atomically.

    ``storage_dtype`` (e.g. ``torch.float16``) rounds the stored floating-point tensors to halve a shipped
    file; loading always rebuilds a float32 model from them."""
    backbone = classifier.backbone
    tensors = {f"backbone.{k}": v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    for task, head in classifier.heads.items():
        tensors[f"heads.{task}.weight"] = head.weight.detach().cpu().contiguous()
        tensors[f"heads.{task}.bias"] = head.bias.detach().cpu().contiguous()
    if storage_dtype is not None:
        tensors = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    config = {
        "backbone": {
            "spec": backbone.spec,
            "weights_sha256": backbone.weights_sha256,
            "in_chans": backbone.in_chans,
            "num_features": backbone.num_features,
            "default_layer": backbone.default_layer,
        },
        "tasks": list(classifier.tasks),
        "kinds": {t: classifier.task_kind(t) for t in classifier.tasks},
        "class_names": {t: list(classifier.class_names[t]) for t in classifier.tasks},
        "dropout": classifier.dropout.p,
    }
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": json.dumps(config)}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))


def _load_project_file(file: Path) -> Classifier:
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{file} is not a readable safetensors file ({exc})") from exc
    if metadata.get("format") != FORMAT:
        raise ModelError(
            f"{file} is a safetensors file but not a mammo-sae classifier (metadata format "
            f"{metadata.get('format')!r}, expected {FORMAT!r}); tensors: {describe_keys(key_prefixes(list(tensors)))}"
        )
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise ModelError(
            f"{file} has classifier format version {metadata.get('format_version')!r}; this mammo-sae "
            f"reads version {FORMAT_VERSION}"
        )
    config = _parse_config(metadata.get("config"), file)
    spec = config["backbone"]["spec"]
    backbone = build_architecture(spec, int(config["backbone"].get("in_chans", 3)))
    backbone.weights_sha256 = config["backbone"].get("weights_sha256")
    own = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
    check_state_dict(own, backbone.model.state_dict(), f"{file} (backbone {spec})")
    backbone.model.load_state_dict(own, strict=True)
    heads: dict[str, nn.Linear] = {}
    for task in config["tasks"]:
        weight, bias = tensors.get(f"heads.{task}.weight"), tensors.get(f"heads.{task}.bias")
        if weight is None or bias is None:
            raise ModelError(f"{file}: the metadata lists task {task!r} but its head tensors are missing")
        heads[task] = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            heads[task].weight.copy_(weight)
            heads[task].bias.copy_(bias)
        if config.get("kinds", {}).get(task, _kind_of(weight.shape[0])) != _kind_of(weight.shape[0]):
            raise ModelError(
                f"{file}: task {task!r} is recorded as {config['kinds'][task]} but has {weight.shape[0]} outputs"
            )
    described = {f"heads.{task}.{part}" for task in config["tasks"] for part in ("weight", "bias")}
    extra = [k for k in tensors if not k.startswith("backbone.") and k not in described]
    if extra:
        raise ModelError(f"{file}: tensors not described by its metadata: {describe_keys(extra)}")
    return Classifier(
        backbone, heads, class_names=config.get("class_names"), dropout=float(config.get("dropout", DROPOUT))
    )


def _parse_config(text: str | None, file: Path) -> dict[str, Any]:
    try:
        config = json.loads(text or "")
        _ = config["backbone"]["spec"], list(config["tasks"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{file}: the classifier metadata is missing or damaged ({exc})") from exc
    return config
