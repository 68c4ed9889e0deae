"""Multi-process training under ``torchrun`` (DDP), and the single-process case.

The global batch of a step is cut into ``world_size * accumulate_steps``
equal, contiguous chunks of batch positions; process ``rank`` runs chunks
``rank * accumulate_steps + 0 .. accumulate_steps - 1`` one after the other.
Because an example depends only on (seed, step, position), any split of the
same global batch computes the same per-chunk losses, and since every chunk
has the same size the all-reduced mean of chunk means is the global mean: one
process with ``accumulate_steps = 8`` is the same optimisation as eight
processes with one each (BatchNorm statistics are per chunk in both).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from omnisep.errors import OmniSepError


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_process_group: bool = False  # False when a caller had set one up already

    @property
    def is_main(self) -> bool:
        """Only the main process logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` takes this process's GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OmniSepError(f"Unknown device '{name}' (use auto, cpu, cuda or cuda:N).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OmniSepError(f"Device '{name}' was asked for, but torch sees no CUDA GPU.")
    return device


def start(device_name: str = "auto") -> Runtime:
    """Join the process group when launched by torchrun (env:// rendezvous)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    owns = world_size > 1 and not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Runtime(rank, world_size, local_rank, device, owns_process_group=owns)


def stop(runtime: Runtime) -> None:
    if runtime.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def chunk_positions(batch_size: int, world_size: int, accumulate_steps: int, rank: int) -> list[range]:
    """Batch positions of each of this process's micro-batches, in order."""
    chunks = world_size * accumulate_steps
    if batch_size % chunks:
        raise OmniSepError(
            f"optim.batch_size = {batch_size} must be a multiple of processes x accumulate_steps = "
            f"{world_size} x {accumulate_steps}."
        )
    size = batch_size // chunks
    first = rank * accumulate_steps
    return [range((first + a) * size, (first + a + 1) * size) for a in range(accumulate_steps)]


class StepBatchSampler:
    """Yields, for each step from ``start_step``, this process's micro-batches of (step, position) keys."""

    def __init__(self, start_step: int, end_step: int, chunks: list[range]):
        self.start_step = start_step
        self.end_step = end_step
        self.chunks = chunks

    def __iter__(self):
        for step in range(self.start_step, self.end_step):
            for chunk in self.chunks:
                yield [(step, position) for position in chunk]

    def __len__(self) -> int:
        return (self.end_step - self.start_step) * len(self.chunks)


def wrap_model(model: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    if not runtime.distributed:
        return model
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(model: torch.nn.Module, last_micro_batch: bool):
    """All-reduce gradients only after the last micro-batch of a step."""
    if isinstance(model, DistributedDataParallel) and not last_micro_batch:
        return model.no_sync()
    return contextlib.nullcontext()


def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def autocast(runtime: Runtime, precision: str):
    """Lower-precision autocast: bf16 on CUDA or the CPU, fp16 on CUDA only; fp32 is a no-op.

    On a CPU with native BF16 (AVX-512 BF16 or AMX) bf16 autocast makes the
    U-Net's convolutions about 1.5-2x faster (docs/performance.md); on one
    without, it still runs, only slower, so the choice stays with the config.
    The loss is always computed in fp32 outside the autocast region.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and runtime.device.type != "cuda":
        raise OmniSepError(f"precision 'fp16' needs a CUDA device; this run is on {runtime.device} (bf16 works on a CPU).")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(runtime.device.type, dtype=dtype)
