"""The SAE interface every architecture shares and its loss record.

Shapes follow SAELens: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in] (one
dictionary vector per row), ``b_dec`` [d_in]. Suffixes name the axes: b batch (tokens), d features (d_in),
s latents (d_sae). Every architecture computes

    pre_bs   = (x_bd - b_dec) @ W_enc + b_enc
    z_bs     = activation(pre_bs)                  # ReLU, TopK, BatchTopK / JumpReLU
    x_hat_bd = z_bs @ W_dec + b_dec

and differs only in ``activation`` and the loss terms beside the MSE. ``loss`` is the plain autograd
reference of the written formula; ``loss_and_grad`` is the fast path (``fast.py``) that writes the same
gradients without an autograd graph, and falls back to ``loss`` + ``torch.autograd.grad`` where no
hand-written kernel applies.

What a trainer needs to know about an architecture it asks the class (never its name):
``sparsity_coeff`` (the penalty weight it may warm up; None without one), ``resamples_dead_latents``
(restart dead latents from high-loss tokens), ``uses_dead_mask`` (the loss takes the dead latents: AuxK)
and ``before_optimizer_step`` / ``after_optimizer_step`` (the decoder-norm bookkeeping).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from mammo_sae.sae.arch_config import SAEConfig
from mammo_sae.sae.errors import SAEError

KERNELS = ("auto", "dense", "sparse", "autograd")
B_DEC_INITS = ("zeros", "mean", "geometric_median")


@dataclass(frozen=True)
class LossParts:
    """One batch's loss and the statistics a trainer logs. ``total == mse + sparsity + aux``.

    All values are tensors on the batch's device (0-d unless noted; call ``.item()`` to log). ``total``
    carries the autograd graph when it comes from :meth:`SparseAutoencoder.loss`, and is detached when it
    comes from :meth:`SparseAutoencoder.loss_and_grad`; every other field is detached.
    """

    total: torch.Tensor
    mse: torch.Tensor  # mean over batch and features of (x_hat - x)^2 (Matryoshka: summed over its prefixes)
    sparsity: torch.Tensor  # the weighted sparsity penalty (relu: L1); 0 for the TopK family
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
    x_bd: torch.Tensor, err_bd: torch.Tensor, active_count: torch.Tensor, z_count_s: torch.Tensor
) -> dict[str, Any]:
    """The shared statistics of :class:`LossParts` from the batch, its error x_hat - x and the counts."""
    assert x_bd.dim() == 2 and err_bd.shape == x_bd.shape, (tuple(x_bd.shape), tuple(err_bd.shape))
    err = err_bd.detach().reshape(-1)
    centred = (x_bd - x_bd.mean(dim=0)).reshape(-1)
    return {
        "l0": active_count.to(x_bd.dtype) / x_bd.shape[0],
        "z_count": z_count_s,
        "sse": torch.dot(err, err),
        "sst": torch.dot(centred, centred),
        "n_tokens": x_bd.shape[0],
    }


class SparseAutoencoder(nn.Module):
    """Base class: parameters, encode/decode, the loss contract and the decoder-norm bookkeeping.

    Subclasses set ``architecture`` (the registered name), ``saelens_architecture`` (the ``cfg.json``
    name; None: no SAELens layout) and implement ``activation``; they may add loss terms
    (``_extra_terms``), a fast path (``_fast_loss_and_grad``) and file tensors (``file_tensor_shapes``).
    The module starts in training mode, as any ``nn.Module``.
    """

    architecture: ClassVar[str] = ""
    saelens_architecture: ClassVar[str | None] = None
    default_for_saelens: ClassVar[bool] = (
        False  # a SAELens file of that name without our metadata loads as this
    )
    unit_norm_decoder: ClassVar[bool] = True
    resamples_dead_latents: ClassVar[bool] = False  # the trainer restarts dead latents (Anthropic)
    uses_dead_mask: ClassVar[bool] = False  # the loss takes the dead latents (AuxK)

    def __init__(
        self,
        cfg: SAEConfig,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(cfg, SAEConfig):
            raise SAEError(f"an SAE is built from an SAEConfig, got {type(cfg).__name__}")
        if not dtype.is_floating_point:
            raise SAEError(f"dtype must be a floating-point torch dtype, got {dtype}")
        self.cfg = cfg
        self.d_in, self.d_sae, self.seed = cfg.d_in, cfg.d_sae, cfg.seed
        d, s = self.d_in, self.d_sae
        # Decoder rows: seeded random unit vectors. Encoder: the decoder's transpose (OpenAI / SAELens
        # TopK / Anthropic init; the paper's library used a separate kaiming-uniform encoder).
        # On the meta device nothing is drawn (load_sae fills the weights from a file).
        if device is not None and torch.device(device).type == "meta":
            w_dec_sd = torch.empty(s, d, dtype=dtype, device=device)
        else:
            generator = torch.Generator().manual_seed(self.seed)
            w_dec_sd = torch.randn(s, d, generator=generator, dtype=torch.float64)
            w_dec_sd /= w_dec_sd.norm(dim=1, keepdim=True)
            w_dec_sd = w_dec_sd.to(dtype)
        self.W_enc = nn.Parameter(w_dec_sd.T.contiguous().to(device))
        self.b_enc = nn.Parameter(torch.zeros(s, dtype=dtype, device=device))
        self.W_dec = nn.Parameter(w_dec_sd.to(device))
        self.b_dec = nn.Parameter(torch.zeros(d, dtype=dtype, device=device))
        self.last_kernel = ""  # which path the last loss_and_grad took: "dense", "sparse" or "autograd"
        self._workspace: dict[str, torch.Tensor] = {}

    # --- description -----------------------------------------------------------------------------------

    @property
    def hparams(self) -> dict[str, Any]:
        """The config's hyper-parameters (with the sizes, what rebuilds this SAE)."""
        return self.cfg.hparams()

    @property
    def sparsity_coeff(self) -> float | None:
        """The weight of the sparsity penalty (a trainer may warm it up); None where there is none."""
        return None

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def extra_repr(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hparams.items() if k != "seed")
        return f"{self.architecture}: d_in={self.d_in}, d_sae={self.d_sae}" + (f", {args}" if args else "")

    # --- files (SAELens layout; see io.py) -------------------------------------------------------------

    @classmethod
    def file_tensor_shapes(cls, d_in: int, d_sae: int) -> dict[str, tuple[int, ...]]:
        """The tensors of ``sae_weights.safetensors`` and their shapes."""
        return {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}

    def saelens_fields(self) -> dict[str, Any]:
        """The architecture's own fields of ``cfg.json`` (SAELens names)."""
        return {"activation_fn": "relu"}

    def after_load(self) -> None:
        """Hook run once a file's tensors are in place (BatchTopK marks its threshold as set)."""

    # --- forward ---------------------------------------------------------------------------------------

    def _as_batch(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] as a [B, d_in] batch in the SAE's dtype."""
        if x.shape[-1] != self.d_in:
            raise SAEError(
                f"the SAE takes vectors of d_in={self.d_in} features, got a tensor of shape "
                f"{tuple(x.shape)}: use an SAE trained on this layer's features"
            )
        return x.reshape(-1, self.d_in).to(self.dtype)

    def pre_activations(self, x_bd: torch.Tensor) -> torch.Tensor:
        """``(x - b_dec) @ W_enc + b_enc`` [B, d_sae] for x [B, d_in]."""
        return (x_bd - self.b_dec) @ self.W_enc + self.b_enc

    def activation(self, pre_bs: torch.Tensor) -> torch.Tensor:
        """The latent code z [B, d_sae] of the pre-activations [B, d_sae]."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z for x [..., d_in] (leading dimensions are kept; the BatchTopK batch is all of them)."""
        lead = x.shape[:-1]
        z_bs = self.activation(self.pre_activations(self._as_batch(x)))
        return z_bs.reshape(*lead, self.d_sae)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z @ W_dec + b_dec`` for z [..., d_sae]."""
        lead = z.shape[:-1]
        x_hat_bd = torch.addmm(self.b_dec, z.reshape(-1, self.d_sae).to(self.dtype), self.W_dec)
        return x_hat_bd.reshape(*lead, self.d_in)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_hat, z)``."""
        z = self.encode(x)
        return self.decode(z), z

    # --- loss --------------------------------------------------------------------------------------------

    def _check_loss_args(self, x: torch.Tensor, dead_mask: torch.Tensor | None) -> torch.Tensor:
        if x.dim() != 2:
            raise SAEError(f"the loss takes a batch of shape [B, {self.d_in}], got {tuple(x.shape)}")
        x_bd = self._as_batch(x)
        if dead_mask is not None and (
            dead_mask.dtype != torch.bool or tuple(dead_mask.shape) != (self.d_sae,)
        ):
            raise SAEError(
                f"dead_mask must be a bool tensor of shape [{self.d_sae}], got "
                f"{dead_mask.dtype} {tuple(dead_mask.shape)}"
            )
        return x_bd

    def _extra_terms(
        self,
        x_bd: torch.Tensor,
        pre_bs: torch.Tensor,
        z_bs: torch.Tensor,
        x_hat_bd: torch.Tensor,
        dead_mask_s: torch.Tensor | None,
        sparsity_coeff: float | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sparsity, aux) terms of the loss, as they enter ``total`` (weighted)."""
        zero = x_bd.new_zeros(())
        return zero, zero

    def _reconstruction_loss(
        self, x_bd: torch.Tensor, z_bs: torch.Tensor, err_bd: torch.Tensor
    ) -> torch.Tensor:
        """The loss's reconstruction term (``mse`` of :class:`LossParts`): the mean of (x_hat - x)^2 here;
        Matryoshka sums it over its nested prefixes of the dictionary."""
        return torch.mean(err_bd * err_bd)

    def _observe_training_code(self, z_bs: torch.Tensor) -> None:
        """Hook for statistics kept across training batches (BatchTopK's threshold); no-op here."""

    def loss(
        self,
        x: torch.Tensor,
        *,
        dead_mask: torch.Tensor | None = None,
        sparsity_coeff: float | None = None,
    ) -> LossParts:
        """The written loss of batch x [B, d_in] with plain autograd (the reference of the fast path).

        ``dead_mask`` [d_sae] bool: the latents counted dead (AuxK); ``sparsity_coeff``: this step's
        penalty weight in place of the SAE's own (a warm-up); both are ignored where they do not apply.
        """
        x_bd = self._check_loss_args(x, dead_mask)
        pre_bs = self.pre_activations(x_bd)
        z_bs = self.activation(pre_bs)
        x_hat_bd = torch.addmm(self.b_dec, z_bs, self.W_dec)
        err_bd = x_hat_bd - x_bd
        mse = self._reconstruction_loss(x_bd, z_bs, err_bd)
        sparsity, aux = self._extra_terms(x_bd, pre_bs, z_bs, x_hat_bd, dead_mask, sparsity_coeff)
        with torch.no_grad():
            z_count_s = (z_bs > 0).sum(dim=0)
            if self.training:
                self._observe_training_code(z_bs)
            stats = batch_stats(x_bd, err_bd, z_count_s.sum(), z_count_s)
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
        sparsity_coeff: float | None = None,
        kernel: str = "auto",
    ) -> LossParts:
        """The loss of ``loss`` with every trainable parameter's ``.grad`` overwritten by its gradient.

        No autograd graph is built on the fast path (so no DDP hooks fire: all-reduce the grads
        yourself). ``kernel``: "auto" (pick by architecture, dtype and measured sparsity), "dense",
        "sparse" or "autograd" (the reference); ``last_kernel`` says which one ran.
        """
        if kernel not in KERNELS:
            raise SAEError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        x_bd = self._check_loss_args(x, dead_mask)
        parts = None
        if kernel != "autograd":
            with torch.no_grad():
                parts = self._fast_loss_and_grad(x_bd, dead_mask, sparsity_coeff, kernel)
        if parts is None:
            parts = self._autograd_loss_and_grad(x_bd, dead_mask, sparsity_coeff)
        return parts

    def _fast_loss_and_grad(
        self,
        x_bd: torch.Tensor,
        dead_mask_s: torch.Tensor | None,
        sparsity_coeff: float | None,
        kernel: str,
    ) -> LossParts | None:
        """Hand-written gradients; None where no kernel applies (the caller then uses autograd)."""
        return None

    def _autograd_loss_and_grad(
        self, x_bd: torch.Tensor, dead_mask_s: torch.Tensor | None, sparsity_coeff: float | None
    ) -> LossParts:
        params = [p for p in self.parameters() if p.requires_grad]
        with torch.enable_grad():
            parts = self.loss(x_bd, dead_mask=dead_mask_s, sparsity_coeff=sparsity_coeff)
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
        grad_sd = self.W_dec.grad
        if not self.unit_norm_decoder or grad_sd is None:
            return
        w_sd = self.W_dec
        parallel_s1 = torch.sum(grad_sd * w_sd, dim=1, keepdim=True) / torch.sum(
            w_sd * w_sd, dim=1, keepdim=True
        ).clamp_min(torch.finfo(w_sd.dtype).tiny)
        grad_sd.sub_(parallel_s1 * w_sd)

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
        x_nd = self._as_batch(x_sample).to(device=self.device, dtype=torch.float64)
        if x_nd.shape[0] == 0:
            raise SAEError("init_b_dec needs at least one sample vector")
        point_d = x_nd.mean(dim=0)
        if method == "geometric_median":
            scale = float(x_nd.std()) if x_nd.shape[0] > 1 else 1.0
            for _ in range(max_iter):
                weights_n = 1.0 / (x_nd - point_d).norm(dim=1).clamp_min(1e-12 * max(scale, 1e-30))
                new_d = (weights_n[:, None] * x_nd).sum(dim=0) / weights_n.sum()
                moved = float((new_d - point_d).norm())
                point_d = new_d
                if moved <= 1e-7 * max(float(point_d.norm()), 1e-30):
                    break
        self.b_dec.copy_(point_d.to(self.dtype))

    @torch.no_grad()
    def reinit_latents(
        self, indices: torch.Tensor, directions: torch.Tensor, encoder_norm: float | torch.Tensor
    ) -> None:
        """Restart latents ``indices`` [n]: decoder rows = unit ``directions`` [n, d_in], encoder columns
        = the same unit directions times ``encoder_norm`` (scalar or [n]), encoder biases = 0.
        (The optimiser's state for these rows is the caller's to reset.)"""
        indices_n = torch.as_tensor(indices, device=self.device).long().reshape(-1)
        directions_nd = directions.to(device=self.device, dtype=self.dtype).reshape(-1, self.d_in)
        if directions_nd.shape[0] != indices_n.numel():
            raise SAEError(
                f"reinit_latents: {indices_n.numel()} indices but {directions_nd.shape[0]} directions"
            )
        unit_nd = directions_nd / directions_nd.norm(dim=1, keepdim=True).clamp_min(
            torch.finfo(self.dtype).tiny
        )
        norm_n1 = torch.as_tensor(encoder_norm, device=self.device, dtype=self.dtype).reshape(-1, 1)
        self.W_dec[indices_n] = unit_nd
        self.W_enc[:, indices_n] = (unit_nd * norm_n1).T
        self.b_enc[indices_n] = 0

    @torch.no_grad()
    def fold_normalisation(self, mean: torch.Tensor | float, scale: float | torch.Tensor) -> None:
        """The SAE was trained on ``(x - mean) * scale``; rewrite it to take raw x and return raw-space
        x_hat, with z unchanged. ``scale``: a number or a per-feature [d_in] tensor.

        b_dec' = mean + b_dec / scale, W_enc' = diag(scale) W_enc, W_dec' = W_dec diag(1 / scale);
        decoder rows are then no longer unit norm (fold for export, after training).
        """
        mean_d = torch.as_tensor(mean, device=self.device, dtype=torch.float64).expand(self.d_in)
        scale_d = torch.as_tensor(scale, device=self.device, dtype=torch.float64).expand(self.d_in)
        if not bool(torch.isfinite(scale_d).all()) or bool((scale_d == 0).any()):
            raise SAEError("fold_normalisation: scale must be finite and non-zero")
        b_dec_d = mean_d + self.b_dec.double() / scale_d
        self.W_enc.copy_(self.W_enc.double() * scale_d[:, None])
        self.W_dec.copy_(self.W_dec.double() / scale_d[None, :])
        self.b_dec.copy_(b_dec_d)
