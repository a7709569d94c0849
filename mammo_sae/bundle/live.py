"""Live inference for a case that is not in the bundle (an uploaded DICOM or PNG): the bundle's own
classifier and SAE run on it, and the result answers the same questions as a bundle case."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.interventions import contributions, shortcut_logits
from mammo_sae.bundle.format import BundleError, resolve_from
from mammo_sae.bundle.reader import Bundle
from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom import MammogramDicom
from mammo_sae.data.frames import AxisMap, FrameTransform
from mammo_sae.data.preprocess import model_input, preprocess_mammogram
from mammo_sae.models import Classifier, create_backbone, load_classifier, stacked_heads
from mammo_sae.sae import SparseAutoencoder, load_sae

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PNG_PIXELS = 60_000_000


@dataclass(frozen=True)
class LiveCase:
    """One image run through backbone + SAE + heads."""

    frame: np.ndarray  # uint8 model frame
    transform: FrameTransform
    zbar: np.ndarray  # [d_sae] float32 mean latents
    codes: TokenCodes  # one image
    logits_original: dict[str, float]
    logits_sae: dict[str, float]


class LiveModels:
    """The bundle's classifier heads, feature encoder and SAE, loaded once (CPU by default)."""

    def __init__(self, bundle: Bundle, device: str = "cpu") -> None:
        inputs = bundle.manifest["inputs"]
        paths = [resolve_from(c["path"], bundle.path) for c in inputs["classifiers"]]
        missing = [str(p) for p in paths if not p.is_file()]
        sae_dir = resolve_from(inputs["sae"]["path"], bundle.path)
        if missing or not sae_dir.is_dir():
            raise BundleError(
                f"live inference needs the bundle's classifier and SAE files; missing: {missing or [str(sae_dir)]}"
            )
        self.bundle = bundle
        self.classifiers: list[Classifier] = [load_classifier(p).to(device).eval() for p in paths]
        backbone = inputs["backbone"]
        if backbone["source"] == "spec":
            self.backbone = create_backbone(backbone["spec"]).to(device).eval()
        else:
            self.backbone = self.classifiers[0].backbone
        self.sae: SparseAutoencoder = load_sae(
            sae_dir, expect_d_in=self.backbone.num_features, device=device
        ).eval()
        self.device = device

    @functools.cached_property
    def _head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return stacked_heads(self.classifiers, self.bundle.tasks)

    @torch.inference_mode()
    def run_frame(self, frame: np.ndarray, transform: FrameTransform) -> LiveCase:
        assert frame.shape == self.bundle.frame_size, "frames come at the bundle's frame size"
        pixels = torch.from_numpy(model_input(frame))[None].to(self.device)
        fmap = self.backbone.forward_features(pixels)
        d, h, w = fmap.shape[1:]
        x = fmap.permute(0, 2, 3, 1).reshape(-1, d)
        z = self.sae.encode(x.to(self.sae.dtype))
        weights, biases = self._head_weights
        pooled = x.double().mean(0)
        logits = (weights @ pooled + biases).cpu().numpy()
        zbar = z.mean(0).float().cpu().numpy()
        sae_logits = shortcut_logits(zbar[None], self.bundle.heads)[0]
        return LiveCase(
            frame=frame,
            transform=transform,
            zbar=zbar,
            codes=TokenCodes.from_dense(z.float().cpu(), grid=(h, w)),
            logits_original=dict(zip(self.bundle.tasks, map(float, logits), strict=True)),
            logits_sae=dict(zip(self.bundle.tasks, map(float, sae_logits), strict=True)),
        )

    def run_dicom(self, image: MammogramDicom) -> LiveCase:
        prepared = preprocess_mammogram(image, self.bundle.frame_size)
        return self.run_frame(prepared.png, prepared.transform)

    def run_png(self, png: np.ndarray) -> LiveCase:
        """A PNG is taken as a Mammo-CLIP frame (already cropped): resized to the bundle's frame size."""
        height, width = self.bundle.frame_size
        frame = (
            cv2.resize(png, (width, height), interpolation=cv2.INTER_AREA)
            if png.shape != (height, width)
            else png
        )
        transform = FrameTransform(
            original_shape=png.shape,
            x=AxisMap(offset=0, kept=np.arange(png.shape[1]), size=width),
            y=AxisMap(offset=0, kept=np.arange(png.shape[0]), size=height),
        )
        return self.run_frame(frame, transform)

    def contributions(self, case: LiveCase, task: str):
        return contributions(case.zbar, self.bundle.heads, task)


def decode_png(data: bytes, name: str = "uploaded file") -> np.ndarray:
    """A greyscale uint8 image from PNG bytes, refusing what is not a PNG or too large before decoding."""
    if not data.startswith(PNG_MAGIC):
        raise DataError(
            f"{name}: not a PNG file (its first bytes are not the PNG signature); upload a .png or a DICOM"
        )
    if len(data) < 24:
        raise DataError(f"{name}: the PNG ends inside its header; it is truncated")
    if data[12:16] != b"IHDR":
        raise DataError(f"{name}: the PNG's first chunk is not its IHDR header; the file is corrupt")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if width * height == 0 or width * height > MAX_PNG_PIXELS:
        raise DataError(f"{name}: a {width} x {height} PNG is empty or larger than {MAX_PNG_PIXELS:,} pixels")
    if b"IEND" not in data:
        raise DataError(f"{name}: the PNG has no IEND chunk; it is truncated or corrupt: upload it again")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{name}: the PNG data is corrupt and cannot be decoded")
    if image.ndim == 3:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image
