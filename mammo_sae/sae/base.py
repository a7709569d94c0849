"""The SAE interface every architecture shares, its loss record, and the registry of architectures.

Shapes follow SAELens: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in] (one
dictionary vector per row), ``b_dec`` [d_in]. Every architecture computes

    pre   = (x - b_dec) @ W_enc + b_enc          # [B, d_sae]
    z     = activation(pre)                     # ReLU, TopK, BatchTopK / JumpReLU
    x_hat = z @ W_dec + b_dec                   # [B, d_in]

and differs only in ``activation`` and the loss terms beside the MSE. ``loss`` is the plain autograd
reference of the written formula; ``loss_and_grad`` is the fast path (``fast.py``) that writes the same
gradients without an autograd graph, and falls back to ``loss`` + ``torch.autograd.grad`` where no
hand-written kernel applies.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from mammo_sae.errors import MammoSaeError

KERNELS = ("auto", "dense", "sparse", "autograd")
B_DEC_INITS = ("zeros", "mean", "geometric_median")


class SAEError(MammoSaeError):
    """An SAE file, architecture name, shape or argument is invalid or does not fit."""


@dataclass(frozen=True)
class LossParts:
    """One batch's loss and the statistics a trainer logs. ``total == mse + sparsity + aux``.

    All values are tensors on the batch's device (0-d unless noted; call ``.item()`` to log). ``total``
    carries the autograd graph when it comes from :meth:`SparseAutoencoder.loss`, and is detached when it
    comes from :meth:`SparseAutoencoder.loss_and_grad`; every other field is detached.
    """

    total: torch.Tensor
    mse: torch.Tensor  # mean over batch and features of (x_hat - x)^2
    sparsity: torch.Tensor  # the weighted L1 term (relu); 0 for the TopK family
    aux: torch.Tensor  # the weighted AuxK term (TopK family, with dead latents); 0 otherwise
    l0: torch.Tensor  # mean number of latents with z > 0 per token
    z_count: torch.Tensor  # [d_sae] int64: tokens of this batch on which each latent fired (z > 0)
    sse: torch.Tensor  # sum over batch and features of (x_hat - x)^2
    sst: torch.Tensor  # sum over batch and features of (x - batch mean of x)^2
    n_tokens: int

    @property
    def explained_variance(self) -> torch.Tensor:
        """1 - sse / sst of this batch (NaN when the batch has no variance)."""
        return 1.0 - self.sse / self.sst

    def detached(self) -> LossParts:
        return replace(self, total=self.total.detach())


def batch_stats(
    x: torch.Tensor, err: torch.Tensor, active_count: torch.Tensor, z_count: torch.Tensor
) -> dict[str, Any]:
    """The shared statistics of :class:`LossParts` from the batch, its error x_hat - x and the counts."""
    err = err.detach().reshape(-1)
    centred = (x - x.mean(dim=0)).reshape(-1)
    return {
        "l0": active_count.to(x.dtype) / x.shape[0],
        "z_count": z_count,
        "sse": torch.dot(err, err),
        "sst": torch.dot(centred, centred),
        "n_tokens": x.shape[0],
    }


class SparseAutoencoder(nn.Module):
    """Base class: parameters, encode/decode, the loss contract and the decoder-norm bookkeeping.

    Subclasses set ``architecture`` (our name), ``saelens_architecture`` (the ``cfg.json`` name) and
    implement ``activation``; they may add loss terms (``_extra_terms``) and a fast path
    (``_fast_loss_and_grad``). The module starts in training mode, as any ``nn.Module``.
    """

    architecture: ClassVar[str] = ""
    saelens_architecture: ClassVar[str] = ""
    unit_norm_decoder: ClassVar[bool] = True

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("d_in", d_in), ("d_sae", d_sae)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SAEError(f"{name} must be a positive integer, got {value!r}")
        if not dtype.is_floating_point:
            raise SAEError(f"dtype must be a floating-point torch dtype, got {dtype}")
        self.d_in, self.d_sae, self.seed = d_in, d_sae, int(seed)
        # Decoder rows: seeded random unit vectors. Encoder: the decoder's transpose (OpenAI / SAELens
        # TopK / Anthropic init; the paper's library used a separate kaiming-uniform encoder).
        # On the meta device nothing is drawn (load_sae fills the weights from a file).
        if device is not None and torch.device(device).type == "meta":
            w_dec = torch.empty(d_sae, d_in, dtype=dtype, device=device)
        else:
            generator = torch.Generator().manual_seed(self.seed)
            w_dec = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float64)
            w_dec /= w_dec.norm(dim=1, keepdim=True)
            w_dec = w_dec.to(dtype)
        self.W_enc = nn.Parameter(w_dec.T.contiguous().to(device))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype, device=device))
        self.W_dec = nn.Parameter(w_dec.to(device))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype, device=device))
        self.last_kernel = ""  # which path the last loss_and_grad took: "dense", "sparse" or "autograd"
        self._workspace: dict[str, torch.Tensor] = {}

    hparam_names: ClassVar[tuple[str, ...]] = ()  # create_sae keywords this architecture uses

    @classmethod
    def from_hparams(
        cls,
        d_in: int,
        d_sae: int,
        hparams: dict[str, Any],
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> SparseAutoencoder:
        """Build from a ``hparams`` dict (keys this class does not use are ignored)."""
        kwargs = {name: hparams[name] for name in cls.hparam_names if name in hparams}
        return cls(d_in, d_sae, seed=int(hparams.get("seed", 0)), dtype=dtype, device=device, **kwargs)

    # --- description -----------------------------------------------------------------------------------

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor's architecture hyper-parameters (what ``create_sae`` needs to rebuild it)."""
        return {"seed": self.seed}

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def extra_repr(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hparams.items() if k != "seed")
        return f"{self.architecture}: d_in={self.d_in}, d_sae={self.d_sae}" + (f", {args}" if args else "")

    # --- forward ---------------------------------------------------------------------------------------

    def _as_batch(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise SAEError(
                f"the SAE takes vectors of d_in={self.d_in} features, got a tensor of shape "
                f"{tuple(x.shape)}: use an SAE trained on this layer's features"
            )
        return x.reshape(-1, self.d_in).to(self.dtype)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - b_dec) @ W_enc + b_enc`` for x [B, d_in]."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """The latent code z [B, d_sae] of the pre-activations [B, d_sae]."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z for x [..., d_in] (leading dimensions are kept; the BatchTopK batch is all of them)."""
        lead = x.shape[:-1]
        return self.activation(self.pre_activations(self._as_batch(x))).reshape(*lead, self.d_sae)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z @ W_dec + b_dec`` for z [..., d_sae]."""
        lead = z.shape[:-1]
        out = torch.addmm(self.b_dec, z.reshape(-1, self.d_sae).to(self.dtype), self.W_dec)
        return out.reshape(*lead, self.d_in)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_hat, z)``."""
        z = self.encode(x)
        return self.decode(z), z

    # --- loss --------------------------------------------------------------------------------------------

    def _check_loss_args(self, x: torch.Tensor, dead_mask: torch.Tensor | None) -> torch.Tensor:
        if x.dim() != 2:
            raise SAEError(f"the loss takes a batch of shape [B, {self.d_in}], got {tuple(x.shape)}")
        x = self._as_batch(x)
        if dead_mask is not None and (
            dead_mask.dtype != torch.bool or tuple(dead_mask.shape) != (self.d_sae,)
        ):
            raise SAEError(
                f"dead_mask must be a bool tensor of shape [{self.d_sae}], got "
                f"{dead_mask.dtype} {tuple(dead_mask.shape)}"
            )
        return x

    def _extra_terms(
        self,
        x: torch.Tensor,
        pre: torch.Tensor,
        z: torch.Tensor,
        x_hat: torch.Tensor,
        dead_mask: torch.Tensor | None,
        l1_coeff: float | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sparsity, aux) terms of the loss, as they enter ``total`` (weighted)."""
        zero = x.new_zeros(())
        return zero, zero

    def _observe_training_code(self, z: torch.Tensor) -> None:
        """Hook for statistics kept across training batches (BatchTopK's threshold); no-op here."""

    def loss(
        self, x: torch.Tensor, *, dead_mask: torch.Tensor | None = None, l1_coeff: float | None = None
    ) -> LossParts:
        """The written loss of batch x [B, d_in] with plain autograd (the reference of the fast path)."""
        x = self._check_loss_args(x, dead_mask)
        pre = self.pre_activations(x)
        z = self.activation(pre)
        x_hat = torch.addmm(self.b_dec, z, self.W_dec)
        err = x_hat - x
        mse = torch.mean(err * err)
        sparsity, aux = self._extra_terms(x, pre, z, x_hat, dead_mask, l1_coeff)
        with torch.no_grad():
            active = z > 0
            z_count = active.sum(dim=0)
            if self.training:
                self._observe_training_code(z)
            stats = batch_stats(x, err, z_count.sum(), z_count)
        return LossParts(
            total=mse + sparsity + aux,
            mse=mse.detach(),
            sparsity=sparsity.detach(),
            aux=aux.detach(),
            **stats,
        )

    def loss_and_grad(
        self,
        x: torch.Tensor,
        *,
        dead_mask: torch.Tensor | None = None,
        l1_coeff: float | None = None,
        kernel: str = "auto",
    ) -> LossParts:
        """The loss of ``loss`` with every trainable parameter's ``.grad`` overwritten by its gradient.

        No autograd graph is built on the fast path (so no DDP hooks fire: all-reduce the grads
        yourself). ``kernel``: "auto" (pick by architecture, dtype and measured sparsity), "dense",
        "sparse" or "autograd" (the reference); ``last_kernel`` says which one ran.
        """
        if kernel not in KERNELS:
            raise SAEError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        x = self._check_loss_args(x, dead_mask)
        parts = None
        if kernel != "autograd":
            with torch.no_grad():
                parts = self._fast_loss_and_grad(x, dead_mask, l1_coeff, kernel)
        if parts is None:
            parts = self._autograd_loss_and_grad(x, dead_mask, l1_coeff)
        return parts

    def _fast_loss_and_grad(
        self, x: torch.Tensor, dead_mask: torch.Tensor | None, l1_coeff: float | None, kernel: str
    ) -> LossParts | None:
        """Hand-written gradients; None where no kernel applies (the caller then uses autograd)."""
        return None

    def _autograd_loss_and_grad(
        self, x: torch.Tensor, dead_mask: torch.Tensor | None, l1_coeff: float | None
    ) -> LossParts:
        params = [p for p in self.parameters() if p.requires_grad]
        with torch.enable_grad():
            parts = self.loss(x, dead_mask=dead_mask, l1_coeff=l1_coeff)
            grads = torch.autograd.grad(parts.total, params, allow_unused=True)
        for param, grad in zip(params, grads, strict=True):
            self.grad_buffer(param).copy_(grad if grad is not None else torch.zeros_like(param))
        self.last_kernel = "autograd"
        return parts.detached()

    # --- buffers of the fast path ---------------------------------------------------------------------

    def workspace(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A reusable scratch tensor (contents undefined); kept between steps to avoid page faults."""
        buf = self._workspace.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device)
            self._workspace[name] = buf
        return buf

    def grad_buffer(self, param: nn.Parameter) -> torch.Tensor:
        """``param.grad``, (re)attached to a kept buffer when it is None or does not fit (contents undefined)."""
        grad = param.grad
        if (
            grad is None
            or grad.shape != param.shape
            or grad.dtype != param.dtype
            or grad.device != param.device
            or grad.stride() != param.stride()
        ):
            names = {id(p): n for n, p in self.named_parameters()}
            grad = self.workspace("grad." + names[id(param)], tuple(param.shape), param)
            param.grad = grad
        return grad

    def grad_target(self, param: nn.Parameter) -> torch.Tensor:
        """Where a kernel writes ``param``'s gradient: its ``.grad``, or scratch when it is frozen."""
        if param.requires_grad:
            return self.grad_buffer(param)
        names = {id(p): n for n, p in self.named_parameters()}
        return self.workspace("frozen." + names[id(param)], tuple(param.shape), param)

    def free_workspace(self) -> None:
        """Drop the fast path's scratch and kept gradient buffers (they are rebuilt on the next step)."""
        self._workspace = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_workspace"] = {}
        return state

    # --- decoder norm ----------------------------------------------------------------------------------

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Remove from each decoder row's gradient its component parallel to the row (it would only
        change the row's norm, which ``after_optimizer_step`` undoes)."""
        grad = self.W_dec.grad
        if not self.unit_norm_decoder or grad is None:
            return
        w = self.W_dec
        parallel = torch.sum(grad * w, dim=1, keepdim=True) / torch.sum(w * w, dim=1, keepdim=True).clamp_min(
            torch.finfo(w.dtype).tiny
        )
        grad.sub_(parallel * w)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Renormalise the decoder rows to unit L2 norm."""
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.dtype).tiny))

    # --- initialisation and surgery ---------------------------------------------------------------------

    @torch.no_grad()
    def init_b_dec(self, x_sample: torch.Tensor, method: str = "zeros", *, max_iter: int = 100) -> None:
        """Set b_dec to 0, the sample mean, or the sample's geometric median (Weiszfeld iterations)."""
        if method not in B_DEC_INITS:
            raise SAEError(f"method must be one of {', '.join(B_DEC_INITS)}, got {method!r}")
        if method == "zeros":
            self.b_dec.zero_()
            return
        x = self._as_batch(x_sample).to(device=self.device, dtype=torch.float64)
        if x.shape[0] == 0:
            raise SAEError("init_b_dec needs at least one sample vector")
        point = x.mean(dim=0)
        if method == "geometric_median":
            scale = float(x.std()) if x.shape[0] > 1 else 1.0
            for _ in range(max_iter):
                weights = 1.0 / (x - point).norm(dim=1).clamp_min(1e-12 * max(scale, 1e-30))
                new = (weights[:, None] * x).sum(dim=0) / weights.sum()
                moved = float((new - point).norm())
                point = new
                if moved <= 1e-7 * max(float(point.norm()), 1e-30):
                    break
        self.b_dec.copy_(point.to(self.dtype))

    @torch.no_grad()
    def reinit_latents(
        self, indices: torch.Tensor, directions: torch.Tensor, encoder_norm: float | torch.Tensor
    ) -> None:
        """Restart latents ``indices`` [n]: decoder rows = unit ``directions`` [n, d_in], encoder columns
        = the same unit directions times ``encoder_norm`` (scalar or [n]), encoder biases = 0.
        (The optimiser's state for these rows is the caller's to reset.)"""
        indices = torch.as_tensor(indices, device=self.device).long().reshape(-1)
        directions = directions.to(device=self.device, dtype=self.dtype).reshape(-1, self.d_in)
        if directions.shape[0] != indices.numel():
            raise SAEError(f"reinit_latents: {indices.numel()} indices but {directions.shape[0]} directions")
        unit = directions / directions.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.dtype).tiny)
        norm = torch.as_tensor(encoder_norm, device=self.device, dtype=self.dtype).reshape(-1, 1)
        self.W_dec[indices] = unit
        self.W_enc[:, indices] = (unit * norm).T
        self.b_enc[indices] = 0

    @torch.no_grad()
    def fold_normalisation(self, mean: torch.Tensor | float, scale: float | torch.Tensor) -> None:
        """The SAE was trained on ``(x - mean) * scale``; rewrite it to take raw x and return raw-space
        x_hat, with z unchanged. ``scale``: a number or a per-feature [d_in] tensor.

        b_dec' = mean + b_dec / scale, W_enc' = diag(scale) W_enc, W_dec' = W_dec diag(1 / scale);
        decoder rows are then no longer unit norm (fold for export, after training).
        """
        mean = torch.as_tensor(mean, device=self.device, dtype=torch.float64).expand(self.d_in)
        scale = torch.as_tensor(scale, device=self.device, dtype=torch.float64).expand(self.d_in)
        if not bool(torch.isfinite(scale).all()) or bool((scale == 0).any()):
            raise SAEError("fold_normalisation: scale must be finite and non-zero")
        b_dec = mean + self.b_dec.double() / scale
        self.W_enc.copy_(self.W_enc.double() * scale[:, None])
        self.W_dec.copy_(self.W_dec.double() / scale[None, :])
        self.b_dec.copy_(b_dec)


# --- registry -----------------------------------------------------------------------------------------

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {}


def register_architecture(cls: type[SparseAutoencoder]) -> type[SparseAutoencoder]:
    """Class decorator: make ``cls`` available to ``create_sae`` and ``load_sae`` by ``cls.architecture``."""
    if not cls.architecture or cls.architecture in ARCHITECTURES:
        raise ValueError(f"architecture name {cls.architecture!r} is empty or already registered")
    ARCHITECTURES[cls.architecture] = cls
    return cls


def architecture_class(name: str) -> type[SparseAutoencoder]:
    if name not in ARCHITECTURES:
        close = difflib.get_close_matches(str(name), ARCHITECTURES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SAEError(f"unknown SAE architecture {name!r}{hint}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def create_sae(
    architecture: str,
    d_in: int,
    d_sae: int,
    *,
    k: int = 64,
    aux_k: int | None = None,
    aux_coeff: float = 1 / 32,
    l1_coeff: float = 3e-5,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SparseAutoencoder:
    """A freshly initialised SAE of a registered architecture (arguments it does not use are ignored)."""
    cls = architecture_class(architecture)
    return cls.from_hparams(
        d_in,
        d_sae,
        {"k": k, "aux_k": aux_k, "aux_coeff": aux_coeff, "l1_coeff": l1_coeff, "seed": seed},
        dtype=dtype,
        device=device,
    )


def check_positive(name: str, value: Any, *, integer: bool) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, int | float)
    if not ok or not (value > 0 if integer else math.isfinite(value) and value >= 0):
        kind = "a positive integer" if integer else "a finite number >= 0"
        raise SAEError(f"{name} must be {kind}, got {value!r}")
