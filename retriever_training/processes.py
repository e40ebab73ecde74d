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


def batch_split_error(name: str, batch_size: int, n: int) -> str | None:
    """Why `batch_size` cannot be shared out over n processes (None: it can)."""
    if batch_size % n:
        return (f"{name} ({batch_size}) does not split over run.nproc={n} processes: the batch size is "
                f"global, shared out equally; choose a multiple of {n}")
    return None


def per_process_batch(batch_size: int, name: str) -> int:
    """This process's share of the global batch (recipe.check_config refuses one that does not split)."""
    n = world_size()
    if why := batch_split_error(name, batch_size, n):
        raise DDPError(why)
    return batch_size // n
