"""Box masks, token targets and lesion-centred crops for box-aware fine-tuning.

With ``--crop HxW`` an epoch sees crops of the frames instead of whole frames: half of them (by default)
centred near a finding, the rest anywhere in the breast, so a small backbone meets many lesions and many
look-alike patches of normal tissue per second of compute. A crop is labelled positive for a task when it
holds at least half of that task's box area. It is a pre-training stage: the whole-frame run that follows
(``--init``) trains the classifier that is used.
"""

from __future__ import annotations

import cv2
import numpy as np

from mammo_sae.extraction.augment import augment_frame

#: a crop is positive for a task when it holds at least this share of the task's box area in the frame
POSITIVE_SHARE = 0.5
#: a token is a target when a box covers at least this share of its cell
TOKEN_COVERAGE = 0.1


def box_masks(
    frame_size: tuple[int, int],
    boxes_frame: dict[str, np.ndarray],
    tasks: tuple[str, ...],
    augment: tuple[int, str] | None,
) -> np.ndarray:
    """[tasks, H, W] uint8 (0 / 255): each task's boxes drawn in the frame, warped like the frame when
    ``augment`` (its seed and image id) is given."""
    masks = np.zeros((len(tasks), *frame_size), dtype=np.uint8)
    for t, task in enumerate(tasks):
        boxes = boxes_frame.get(task)
        if boxes is None or not len(boxes):
            continue
        for x0, y0, x1, y1 in np.round(boxes).astype(int):
            masks[t, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 255
        if augment is not None:
            masks[t] = augment_frame(masks[t], *augment)
    return masks


def token_grid_targets(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[tasks, gh, gw] float32: 1 where a token's cell is at least TOKEN_COVERAGE covered by the mask."""
    out = np.zeros((masks.shape[0], *grid), dtype=np.float32)
    for t, mask in enumerate(masks):
        if mask.any():
            coverage = cv2.resize(
                mask.astype(np.float32) / 255, (grid[1], grid[0]), interpolation=cv2.INTER_AREA
            )
            out[t] = coverage >= TOKEN_COVERAGE
    return out


def pick_crop(
    frame: np.ndarray,
    masks: np.ndarray,
    crop: tuple[int, int],
    lesion_fraction: float,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Top-left (y, x) of a crop inside the frame: near a random box pixel with probability
    ``lesion_fraction`` (when the frame has a box), else centred on a random breast pixel."""
    height, width = frame.shape
    ch, cw = crop
    assert ch <= height and cw <= width, "the crop must fit in the frame"
    marked = masks.any(axis=0)
    if marked.any() and rng.random() < lesion_fraction:
        ys, xs = np.nonzero(marked)
        k = int(rng.integers(len(ys)))
        cy = ys[k] + rng.uniform(-0.25, 0.25) * ch
        cx = xs[k] + rng.uniform(-0.25, 0.25) * cw
    else:
        ys, xs = np.nonzero(frame)
        if len(ys):
            k = int(rng.integers(len(ys)))
            cy, cx = ys[k], xs[k]
        else:
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    y0 = int(np.clip(round(cy - ch / 2), 0, height - ch))
    x0 = int(np.clip(round(cx - cw / 2), 0, width - cw))
    return y0, x0


def crop_labels(masks: np.ndarray, y0: int, x0: int, crop: tuple[int, int]) -> np.ndarray:
    """[tasks] float32: 1 where the crop holds at least POSITIVE_SHARE of the task's box area."""
    inside = (
        masks[:, y0 : y0 + crop[0], x0 : x0 + crop[1]].reshape(len(masks), -1).sum(axis=1, dtype=np.int64)
    )
    total = masks.reshape(len(masks), -1).sum(axis=1, dtype=np.int64)
    return ((total > 0) & (inside >= POSITIVE_SHARE * total)).astype(np.float32)
