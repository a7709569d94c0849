"""Live inference for a case that is not in the bundle (an uploaded DICOM or PNG): the bundle's own
classifier and SAE run on it, and the result answers the same questions as a bundle case.

Uploads are framed by the data layer's frame policy (:mod:`mammo_sae.data.frame_policy`) with the
bundle's recorded source, so an uploaded DICOM gets the pixels the analysis would have given it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.interventions import contributions, shortcut_logits
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.reader import Bundle
from mammo_sae.data.conditioning import MAMMO_CLIP
from mammo_sae.data.dicom import MammogramDicom
from mammo_sae.data.frame_policy import MappedFrame, frame_from_dicom, frame_from_png
from mammo_sae.data.frames import FrameTransform
from mammo_sae.data.preprocess import model_input
from mammo_sae.models import Classifier, create_backbone, load_classifier, stacked_heads
from mammo_sae.sae import SparseAutoencoder, load_sae


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
        try:
            paths, sae_dir, spec = bundle.classifier_paths, bundle.sae_dir, bundle.backbone_spec
        except BundleError as error:
            raise BundleError(
                f"live inference needs the bundle's classifier and SAE files: {error}"
            ) from None
        self.bundle = bundle
        self.classifiers: list[Classifier] = [load_classifier(p).to(device).eval() for p in paths]
        if spec is not None:
            self.backbone = create_backbone(spec).to(device).eval()
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

    @property
    def frame_source(self) -> str:
        """The bundle's frame source ("dicom" for bundles made before frame policies were recorded)."""
        return str((self.bundle.manifest.get("frames") or {}).get("source", "dicom"))

    def run_mapped(self, mapped: MappedFrame) -> LiveCase:
        return self.run_frame(mapped.pixels, mapped.transform)

    def run_dicom(self, image: MammogramDicom, conditioning: str = MAMMO_CLIP) -> LiveCase:
        """An uploaded DICOM framed as the bundle's source says; ``conditioning="robust"`` cleans a file of
        any origin first (padding, FOR PROCESSING, labels, borders: ``data.conditioning``), "mammo-clip"
        feeds the recipe unchanged."""
        frame = frame_from_dicom(image, self.bundle.frame_size, self.frame_source, conditioning)
        return self.run_mapped(frame)

    def run_png(self, png: np.ndarray) -> LiveCase:
        """A PNG is taken as a Mammo-CLIP frame (already cropped): resized to the bundle's frame size."""
        return self.run_mapped(frame_from_png(png, self.bundle.frame_size))

    def contributions(self, case: LiveCase, task: str):
        return contributions(case.zbar, self.bundle.heads, task)
