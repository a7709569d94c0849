"""Data layer: the VinDr-Mammo index, DICOM decoding, Mammo-CLIP preprocessing and the phantom generator.

index = VindrIndex.load(root)                        # image and findings tables, labels, missing files
image = read_mammogram(index.images.path[0])         # one read, safe metadata only
shown = display_image(image, "STANDARD")             # for people: windowed uint8, bright = dense
frame = preprocess_mammogram(image)                  # for models: the Mammo-CLIP PNG + box transform
x = model_input(frame.png)                           # float32 (3, 1520, 912)
policy = FramePolicy.resolve("auto", index)          # DICOM or Mammo-CLIP PNG frames, chosen once per root
"""

from mammo_sae.data.categories import KNOWN_CATEGORIES, TARGETS, category_key, parse_category_list
from mammo_sae.data.dicom import (
    DicomReadError,
    MammogramDicom,
    SafeMetadata,
    display_image,
    list_presets,
    read_mammogram,
)
from mammo_sae.data.frame_policy import FramePolicy
from mammo_sae.data.frames import FrameTransform, flip_boxes_horizontally, needs_display_flip
from mammo_sae.data.preprocess import Preprocessed, model_input, preprocess, preprocess_mammogram
from mammo_sae.data.vindr import BREAST_CSV, FINDING_CSV, MAMMO_CLIP_CSV, VindrIndex

__all__ = [
    "BREAST_CSV",
    "FINDING_CSV",
    "KNOWN_CATEGORIES",
    "MAMMO_CLIP_CSV",
    "TARGETS",
    "DicomReadError",
    "FramePolicy",
    "FrameTransform",
    "MammogramDicom",
    "Preprocessed",
    "SafeMetadata",
    "VindrIndex",
    "category_key",
    "display_image",
    "flip_boxes_horizontally",
    "list_presets",
    "model_input",
    "needs_display_flip",
    "parse_category_list",
    "preprocess",
    "preprocess_mammogram",
    "read_mammogram",
]
