"""A fresh retrieval-only eval of the shipped configs must match eval/regression/squad_dev.yaml.

BM25 (no corpus embedding, ~5 s) runs in the default suite over all 4,610 test questions; base
and hybrid embed the corpus into a fresh index and take ~3 min on two cores, so they are slow:
    pytest -m slow tests/eval/test_regression.py
"""
import json
from pathlib import Path

import pytest
import yaml

from eval.run import EvalConfig, run_eval
from rag.corpus import load_corpus, load_queries

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "eval" / "regression" / "squad_dev.yaml").read_text())
SLOW = [r for r in SPEC["expected"] if r not in SPEC["fast"]]


def run_and_check(retrievers: list[str], out: Path) -> None:
    cfg = EvalConfig(corpus=SPEC["corpus"], split=SPEC["split"], retrievers=tuple(retrievers), retrieval_only=True)
    run_dir = run_eval(cfg, out=out, progress=False, report=False)
    for r in retrievers:
        got = json.loads((run_dir / r / "metrics.json").read_text())
        assert got["n_answered"] == SPEC["corpus_stats"]["questions"]
        for m, want in SPEC["expected"][r].items():
            assert got["ir"][m] == pytest.approx(want, abs=SPEC["tolerance"]), \
                f"{r} {m}: {got['ir'][m]:.4f}, spec {want} (tolerance {SPEC['tolerance']})"


def test_corpus_statistics_are_pinned():
    stats = SPEC["corpus_stats"]
    corpus = load_corpus(SPEC["corpus"])
    assert (len(corpus), corpus.hash) == (stats["passages"], stats["corpus_hash"])
    assert len(load_queries(SPEC["corpus"], SPEC["split"])) == stats["questions"]


def test_fast_configs_within_tolerance(tmp_path):
    run_and_check(SPEC["fast"], tmp_path / "fast")


@pytest.mark.slow
def test_dense_configs_within_tolerance(tmp_path):
    run_and_check(SLOW, tmp_path / "slow")
