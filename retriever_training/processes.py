"""Which process of a torchrun (DDP) training this is, for the code that trains (distill.py,
train_ranker.py); ddp.py launches the processes. Outside torchrun: one process, rank 0."""
from __future__ import annotations

import os

from rag.errors import UserError


class DDPError(UserError, RuntimeError):
    pass


def world_size() -> int:
    """Processes in this training (torchrun sets WORLD_SIZE in each); 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def per_process_batch(batch_size: int, what: str) -> int:
    n = world_size()
    if batch_size % n:
        raise DDPError(f"{what}={batch_size} does not split over {n} processes: choose a multiple of {n} "
                       "(it is the global batch, shared out equally).")
    return batch_size // n
