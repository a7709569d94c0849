"""Training-time augmentation of a model frame, as the paper's SAE training used: flips, affine, elastic.

Deterministic per (seed, image_id). Labels are image-level, so they are unchanged; token positions
then refer to the augmented frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from mammo_sae.extraction.tokens import image_rng

MAX_ROTATION_DEG = 10.0
SCALE_RANGE = (0.9, 1.1)
MAX_SHIFT = 0.05
ELASTIC_PROBABILITY = 0.5
ELASTIC_ALPHA = 0.03  # displacement amplitude, as a fraction of the frame width
ELASTIC_SIGMA = 0.04  # smoothness of the displacement field, as a fraction of the frame width


def augment_frame(frame: np.ndarray, seed: int, image_id: str) -> np.ndarray:
    """Randomly flipped, rotated/scaled/shifted and elastically deformed copy of a uint8 frame."""
    assert frame.ndim == 2 and frame.dtype == np.uint8, "augment single-channel uint8 frames"
    rng = image_rng(seed, image_id, "augment")
    height, width = frame.shape
    out = frame[:, ::-1] if rng.random() < 0.5 else frame
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    scale = rng.uniform(*SCALE_RANGE)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * (width, height)
    out = cv2.warpAffine(
        np.ascontiguousarray(out), matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0
    )
    if rng.random() < ELASTIC_PROBABILITY:
        out = _elastic(out, rng)
    return out


def _elastic(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = frame.shape
    sigma = ELASTIC_SIGMA * width
    fields = []
    for _ in range(2):
        noise = rng.uniform(-1, 1, size=(height, width)).astype(np.float32)
        smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
        smooth *= ELASTIC_ALPHA * width / (np.abs(smooth).max() + 1e-12)
        fields.append(smooth)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(frame, xs + fields[0], ys + fields[1], cv2.INTER_LINEAR, borderValue=0)
