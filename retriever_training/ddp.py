"""The two training stages on several processes: torchrun (DDP) for the ranker (4) and the student (6).

    distilrag retrain ... --nproc N        (run.nproc; N > 1 runs those two stages as below)
    torchrun --standalone --nproc_per_node N -m retriever_training.ddp <run>/ddp/<stage>.in.pkl

In:  <run>/ddp/<stage>.in.pkl — the stage function's name and arguments (retrain.py writes it)
Out: what the stage function writes (rank 0 alone: ranker/ or student/) and <run>/ddp/<stage>.out.pkl,
     rank 0's return value, which retrain.py reads back as if the stage had run in its own process.

Every process runs the same function on the same inputs. sentence-transformers' trainers (Hugging
Face Trainer on accelerate) give each process whole batches of the same sampler, the document-
grouped one included, and average the gradients; the student's loss takes every process's
passages as in-batch negatives (losses.gather_passages). The global batch stays the recipe's:
each process gets batch_size / N queries, so one config trains the same model on 1 or N processes.
Processes talk over NCCL with a GPU each, over gloo on CPUs. Only the training stages fan out;
labelling fans out through the farm (ql_farm.py), and every other stage stays in one process.
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

from retriever_training.processes import DDPError, is_main_process


def _ranker(*args):
    """train_ranker; under torchrun without the model in the return value (the caller loads the
    saved one: a model does not travel back through a pickle)."""
    from retriever_training.processes import world_size
    from retriever_training.train_ranker import train_ranker

    model, train, heldout = train_ranker(*args)
    return None if world_size() > 1 else model, train, heldout


def _distill(*args):
    from retriever_training.distill import distill

    return distill(*args)


STAGES = {"ranker": _ranker, "distill": _distill}


def run_stage(stage: str, args: tuple, run_dir: Path, nproc: int):
    """STAGES[stage](*args): in this process when nproc is 1, else under `torchrun
    --nproc_per_node nproc` (rank 0's return value)."""
    import subprocess

    if stage not in STAGES:
        raise ValueError(f"no multi-process stage {stage!r}; there are {sorted(STAGES)}")
    if nproc == 1:
        return STAGES[stage](*args)
    work = run_dir / "ddp"
    work.mkdir(parents=True, exist_ok=True)
    inp, out = work / f"{stage}.in.pkl", work / f"{stage}.out.pkl"
    out.unlink(missing_ok=True)
    tmp = inp.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps((stage, args)))
    tmp.replace(inp)
    env = dict(os.environ)
    # Each process a share of the cores (torchrun's default is 1 thread a process).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "retriever_training.ddp", str(inp)]
    print(f"[distilrag] stage {stage} on {nproc} processes: {' '.join(cmd[1:])}", flush=True)
    code = subprocess.run(cmd, env=env).returncode
    if code != 0 or not out.exists():
        raise DDPError(f"the {stage} stage failed under torchrun (exit {code}); its processes' errors are above. "
                       "Run again to retry it, or with --run.nproc=1 to train in one process.")
    result = pickle.loads(out.read_bytes())
    out.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    """One process of a torchrun job: the stage function on the pickled arguments."""
    from rag.settings import apply_offline_env

    apply_offline_env()
    path = Path((argv or sys.argv[1:])[0])
    stage, args = pickle.loads(path.read_bytes())
    result = STAGES[stage](*args)
    if is_main_process():
        out = path.with_name(f"{stage}.out.pkl")
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(result))
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
