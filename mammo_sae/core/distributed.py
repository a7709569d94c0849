"""Multi-process runs under `torchrun`: who am I, and how the ranks meet.

Without torchrun's environment every helper degrades to a single process, so the same code path serves
a laptop and a multi-node GPU job. CPU runs use the gloo backend, GPU runs nccl.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mammo_sae.core.errors import MammoSaeError, os_error_message


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


LOCAL = DistContext()  # a single process: rank 0 of 1


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK); single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def device_for(context: DistContext, device: str) -> torch.device:
    """The torch device of this rank (one GPU per local rank)."""
    if device == "cuda":
        if not torch.cuda.is_available():
            raise MammoSaeError(
                "--device cuda was asked for, but no CUDA device is visible; use --device cpu"
            )
        return torch.device("cuda", context.local_rank)
    return torch.device("cpu")


def barrier(context: DistContext) -> None:
    if context.active:
        dist.barrier()


def gather_objects(context: DistContext, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (just ``[value]`` in a single process)."""
    if not context.active:
        return [value]
    out: list[Any] = [None] * context.world_size
    dist.all_gather_object(out, value)
    return out


def shutdown(context: DistContext) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def run_command(prog: str, device: str, job: Callable[[DistContext], dict[str, Any]]) -> int:
    """Run a command's job on every rank: errors become one message and exit code 2, the main rank
    prints the JSON summary, and the process group is always left."""
    context = None
    try:
        context = init_distributed(device)
        summary = job(context)
    except (MammoSaeError, OSError) as error:  # OSError: a full disk, a read-only folder, a missing path
        rank = f" (rank {context.rank})" if context is not None and context.active else ""
        message = os_error_message(error) if isinstance(error, OSError) else error
        print(f"{prog}: error{rank}: {message}", file=sys.stderr)
        return 2
    finally:
        if context is not None:
            shutdown(context)
    if context.is_main:
        print(json.dumps(summary, indent=1))
    return 0
