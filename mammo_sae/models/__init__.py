"""Models: backbones by name, the Mammo-CLIP encoder imported into timm, classification heads, hooks.

backbone = create_backbone("mammoclip-b5:/models/b5-model-best-epoch-7.tar")  # or "timm:resnet18"
fmap = backbone.forward_features(x)               # (B, 2048, 48, 29) for B5 at 1520x912
block = capture_layer(backbone, "blocks.5", x)    # any layer of backbone.layer_names()
clf = load_classifier(".../fine_tune/mass/...best_aucroc_ver084.pth")   # or the project's .safetensors
logits = clf.forward_head(fmap)                   # {"mass": (B, 1)}; clf(x) does both halves
save_classifier(clf, "mass.safetensors")

Nothing here downloads weights: timm models are always created with ``pretrained=False``.
"""

from mammo_sae.core.errors import ModelError
from mammo_sae.models.backbones import (
    SPEC_SYNTAX,
    Backbone,
    BackboneSpec,
    build_architecture,
    create_backbone,
    parse_spec,
)
from mammo_sae.models.checkpoints import TRUST_ENV
from mammo_sae.models.heads import (
    DEFAULT_CLASS_NAMES,
    KNOWN_TASKS,
    Classifier,
    TaskKind,
    load_classifier,
    save_classifier,
    stacked_heads,
    task_from_path,
)
from mammo_sae.models.hooks import capture_layer, feature_layers, layer_names, resolve_layer
from mammo_sae.models.mammoclip import ARCHS, MammoClipArch, lukemelas_to_timm_keys, pin_static_padding

__all__ = [
    "ARCHS",
    "DEFAULT_CLASS_NAMES",
    "KNOWN_TASKS",
    "SPEC_SYNTAX",
    "TRUST_ENV",
    "Backbone",
    "BackboneSpec",
    "Classifier",
    "MammoClipArch",
    "ModelError",
    "TaskKind",
    "build_architecture",
    "capture_layer",
    "create_backbone",
    "feature_layers",
    "layer_names",
    "load_classifier",
    "lukemelas_to_timm_keys",
    "parse_spec",
    "pin_static_padding",
    "resolve_layer",
    "save_classifier",
    "stacked_heads",
    "task_from_path",
]
