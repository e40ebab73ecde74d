"""What every LLM ranking mode shares: the stage's config, its cost ledger and its time budget.

In:  the llm_rank section of a retrain/label config
Out: <labels>/rankings.ledger.json: calls, tokens, cost and cache hits per run and in total,
     first_started; saved every few dozen calls and when a run stops (interrupted runs count too)
The modes (rank_chat: listwise/pointwise over a chat API; rank_ql: query likelihood in-process)
and the stage's dispatcher (llm_rank) import it; it imports none of them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.records import LedgerRun, write_json
from retriever_training.label_cost import machine_id


MODES = ("listwise", "pointwise", "query_likelihood")


@dataclass(frozen=True)
class LLMRankConfig:
    mode: str = "query_likelihood"
    max_candidates: int = 10     # the LLM ranks each list's first-stage top-k (cost is linear in k)
    window: int = 10             # listwise: passages per prompt
    step: int = 5                # listwise: window stride (back to front, RankGPT style)
    passage_words: int = 80      # listwise/pointwise: passages cut to this many words (0 = whole)
    n_threads: int = 0           # query_likelihood: CPU threads for llama.cpp (0 = all)
    ql_backend: str = "llama_cpp"  # query_likelihood runtime: llama_cpp (CPU) | transformers (GPU) | http (a farm)
    endpoints: tuple[str, ...] = ()  # http: OpenAI-compatible /v1 URLs that return prompt log-probs (echo)
    ql_model: str = ""           # http: the model name at those endpoints ("" = the embedded GGUF's)
    ql_api_key_env: str = ""     # http: the variable holding the endpoints' key (never printed)
    ql_device: str = "auto"      # transformers backend: cuda | cpu | auto
    ql_batch_size: int = 32      # transformers backend: queries per forward pass
    concurrency: int = 4         # listwise/pointwise: parallel requests to the endpoint
    price_in_per_mtok: float = 0.0   # cost table for the ledger/dry run (USD per 1M tokens)
    price_out_per_mtok: float = 0.0
    budget_minutes: float = 0.0  # stop at the first query boundary after this long (0 = no limit)
    max_queries: int = 0         # stop once this many queries are ranked, earlier runs included (0 = all)

    def __post_init__(self):
        from rag.config import require

        require(self, positive=("max_candidates", "window", "step", "ql_batch_size", "concurrency"),
                non_negative=("passage_words", "n_threads", "price_in_per_mtok", "price_out_per_mtok",
                              "budget_minutes", "max_queries"),
                choices={"mode": MODES, "ql_backend": ("llama_cpp", "transformers", "http"),
                         "ql_device": ("auto", "cuda", "cpu")})


@dataclass
class Ledger(LedgerRun):
    """A labelling run's rag.records.LedgerRun as it runs: this machine's id, its clock and its
    checkpoints into <rankings>.ledger.json."""
    machine: str = field(default_factory=machine_id)

    def __post_init__(self):
        self._t0, self._saved_calls = time.perf_counter(), 0

    def add_cost(self, cfg: LLMRankConfig) -> None:
        self.cost_usd = round(self.prompt_tokens / 1e6 * cfg.price_in_per_mtok
                              + self.completion_tokens / 1e6 * cfg.price_out_per_mtok, 4)

    def checkpoint(self, out_path: Path, cfg: LLMRankConfig | None = None, every: int = 50) -> None:
        """Save the ledger once `every` calls were made since the last save (a kill loses fewer)."""
        if self.calls - self._saved_calls >= every:
            self.seconds = round(time.perf_counter() - self._t0, 1)
            if cfg is not None:
                self.add_cost(cfg)
            save_ledger(out_path, self, status="running")


def budget_over(cfg: LLMRankConfig, t0: float, now: float) -> bool:
    """Whether the labelling budget is spent (checked between queries, so every written query is whole)."""
    return bool(cfg.budget_minutes) and now - t0 >= 60 * cfg.budget_minutes


def machine_ledgers(labels_root: Path) -> list[Path]:
    """Every labelling ledger under the label sets' folder: the rates achieved on this machine."""
    return sorted(labels_root.glob("*/rankings.ledger.json")) if labels_root.is_dir() else []


LEDGER_TOTALS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "repairs", "malformed",
                 "seconds", "queries_done", "cost_usd", "est_tokens")


def ledger_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name.split(".")[0] + ".ledger.json")


def save_ledger(out_path: Path, ledger: Ledger, status: str = "finished") -> None:
    """Record `ledger` as its run's entry in <rankings>.ledger.json (replacing that run's earlier
    checkpoint) and re-add the totals over every run; status: running | interrupted | finished."""
    import sys

    path = ledger_path(out_path)
    old: dict = {}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(old, dict) or not isinstance(old.get("runs", []), list):
                raise ValueError("not a ledger")
        except (ValueError, UnicodeDecodeError) as e:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            path.rename(aside)
            print(f"warning: {path} is unreadable ({type(e).__name__}); moved it to {aside.name}, "
                  "its totals are not in the new ledger.", file=sys.stderr)
            old = {}
    runs = [r for r in old.get("runs", []) if r.get("run_id") != ledger.run_id or not ledger.run_id]
    runs.append({**asdict(ledger), "status": status, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    ledger._saved_calls = ledger.calls
    total = {k: round(sum(r.get(k, 0) for r in runs), 4) for k in LEDGER_TOTALS}
    starts = [s for s in [old.get("first_started")] + [r.get("started_at") for r in runs] if s]
    write_json(path, {"first_started": min(starts) if starts else ledger.started_at,
                      "total": total, "runs": runs})
