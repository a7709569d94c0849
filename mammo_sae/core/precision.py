"""Which reduced precision a training step may run in on this device.

Mixed precision pays where the hardware computes it natively: fp16 on CUDA (with a gradient scaler), bf16
on CPUs with AVX512-BF16 or AMX units, where oneDNN convolutions run about twice as fast as in fp32. On
other CPUs bf16 is emulated and slower, so training stays in fp32 there.
"""

from __future__ import annotations

import contextlib

import torch


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for full precision."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype`` on ``device`` (a no-op for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
