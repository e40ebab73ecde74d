"""The first run's background retrain: the shipped corpus gets its distilled retriever and ranker
from the committed LLM labels while the chat is already usable.

    distilrag app --background-retrain        (what scripts/run_app.sh runs)

In:  retriever_training/configs/<corpus>.yaml and the labels it names (committed: no LLM time)
Out: runs/<run>/ exactly as `distilrag retrain` writes it, its log at <home>/logs/retrain-<corpus>.log,
     and the published models, which the app picks up on its next rerun without a restart.
The job runs at the lowest CPU priority (nice 19), so the LLM answering questions keeps the CPU;
a stopped job resumes at its unfinished stage (the retrain skips finished ones) the next time.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rag.settings import REPO_ROOT, home, runs_dir

CONFIGS = REPO_ROOT / "retriever_training" / "configs"
# The retrain's stages after labelling, in order, as its run directory's markers name them.
STAGES = ("ranker", "teacher", "distill", "heldout", "verdict")
STAGE_TITLES = {"labels": "preparing labels", "ranker": "training the ranker",
                "teacher": "scoring with the ranker", "distill": "distilling the retriever",
                "heldout": "measuring on the held-out test split",
                "verdict": "judging base vs distilled on held-out labelled queries", "publish": "publishing"}
# tqdm's bar: "desc:  40%|####      | 80/200 [01:02<01:33, 1.3it/s]"
_TQDM = re.compile(r"(?:(?P<desc>[^\r\n|]*?):\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
                   r"\s*\[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+)")


@dataclass(frozen=True)
class RetrainStatus:
    state: str             # "none" | "running" | "done" | "refused" (the verdict) | "failed" | "stopped"
    stage: str = ""        # a key of STAGE_TITLES
    done_stages: int = 0   # of len(STAGES)
    step: str = ""         # the current progress bar: "80/200 (40%)"
    stage_left: str = ""   # tqdm's estimate of the current stage's time left, e.g. "01:33"
    detail: str = ""       # failure reason or log tail

    @property
    def summary(self) -> str:
        if self.state == "running":
            left = f", about {self.stage_left} left in this stage" if self.stage_left else ""
            return (f"stage {min(self.done_stages + 1, len(STAGES))} of {len(STAGES)}: "
                    f"{STAGE_TITLES.get(self.stage, self.stage)}{' ' + self.step if self.step else ''}{left}")
        return {"done": "finished: the distilled retriever and the ranker are published",
                "refused": f"finished, the distilled retriever not published: {self.detail}",
                "failed": f"failed: {self.detail}", "stopped": "stopped; it resumes when the app starts again",
                }.get(self.state, "not started")


def config_for(corpus: str) -> Path | None:
    """The shipped retrain config of a shipped corpus, if it has one."""
    path = CONFIGS / f"{corpus}.yaml"
    return path if path.is_file() else None


def _run_name(config: Path) -> str:
    import yaml

    raw = yaml.safe_load(config.read_text()) or {}
    return str((raw.get("run") or {}).get("name") or config.stem)


def log_path(corpus: str) -> Path:
    return home() / "logs" / f"retrain-{corpus}.log"


def _pid_path(corpus: str) -> Path:
    return home() / f"retrain-{corpus}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (finished, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def running_pid(corpus: str) -> int | None:
    try:
        pid = int(_pid_path(corpus).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def start(corpus: str, command: list[str] | None = None) -> int | None:
    """Start the retrain of `corpus` in the background unless it runs already; its pid, or None
    when the corpus has no shipped config. `command` replaces the retrain (tests use a fake)."""
    config = config_for(corpus)
    if config is None and command is None:
        return None
    if (pid := running_pid(corpus)) is not None:
        return pid
    cmd = command or [sys.executable, "-m", "app.cli", "retrain", "--config", str(config)]
    log = log_path(corpus)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    with open(log, "ab") as fh:
        fh.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} background retrain: {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO_ROOT, env=env, preexec_fn=lambda: os.nice(19))
    from rag.records import _atomic_text

    _atomic_text(_pid_path(corpus), f"{proc.pid}\n")
    return proc.pid


def _last_bar(text: str) -> re.Match | None:
    bars = [m for m in _TQDM.finditer(text.replace("\r", "\n"))]
    return bars[-1] if bars else None


def status(corpus: str, run_dir: Path | None = None) -> RetrainStatus:
    """Where the background retrain of `corpus` stands, read from its run directory and its log."""
    config = config_for(corpus)
    if run_dir is None:
        if config is None:
            return RetrainStatus("none")
        run_dir = runs_dir() / _run_name(config)
    done = [s for s in STAGES if (run_dir / "stages" / f"{s}.json").exists()]
    try:
        text = log_path(corpus).read_text(errors="replace")[-20_000:]
    except OSError:
        text = ""
    text = text[text.rfind("--- "):] if "--- " in text else text  # this attempt's lines only
    pid = running_pid(corpus)
    if pid is None and (run_dir / "metrics.json").exists() and "Traceback" not in text:
        return RetrainStatus("done", "publish", len(done))
    if pid is None:
        if not text:
            return RetrainStatus("none", done_stages=len(done))
        from rag.errors import scrub

        tail = [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-3:]
        if "Traceback" not in text and re.search(r"^not published", text, re.M):  # the verdict's, with what serves now
            return RetrainStatus("refused", "publish", len(done), detail=scrub(" ".join(tail[-2:]))[-600:])
        finished = "Traceback" in text or re.search(r"^(error|stopped)", text, re.M)
        return RetrainStatus("failed" if finished else "stopped", done_stages=len(done),
                             detail=scrub(" | ".join(tail))[-400:])
    stage = next((s for s in STAGES if s not in done), "publish")
    if not (run_dir / "stages").exists() and not (run_dir / "label_report.json").exists():
        stage = "labels"
    bar = _last_bar(text)
    step = left = ""
    if bar:
        step = f"{bar['n']}/{bar['total']} ({bar['pct']}%)"
        left = "" if "?" in bar["left"] else bar["left"]
    return RetrainStatus("running", stage, len(done), step, left)
