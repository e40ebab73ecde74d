"""A fresh retrieval-only eval of the shipped configs must match eval/regression/squad_dev.yaml.

The fast check runs BM25 (no corpus embedding) on a seeded subset; the full check (all 4,610
test questions, base/bm25/hybrid, embeds the corpus into a fresh index) is marked slow:
    pytest -m slow tests/eval/test_regression.py
"""
import json
from pathlib import Path

import pytest
import yaml

from eval.run import EvalConfig, run_eval
from rag.corpus import load_corpus, load_queries

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "eval" / "regression" / "squad_dev.yaml").read_text())


def check(run_dir: Path, expected: dict, tol: float) -> None:
    for retriever, metrics in expected.items():
        got = json.loads((run_dir / retriever / "metrics.json").read_text())["ir"]
        for m, want in metrics.items():
            assert got[m] == pytest.approx(want, abs=tol), f"{retriever} {m}: {got[m]:.4f} vs spec {want}"


def test_corpus_statistics_are_pinned():
    stats = SPEC["corpus_stats"]
    corpus = load_corpus(SPEC["corpus"])
    assert (len(corpus), corpus.hash) == (stats["passages"], stats["corpus_hash"])
    assert len(load_queries(SPEC["corpus"], SPEC["split"])) == stats["questions"]


def test_smoke_subset_within_tolerance(tmp_path):
    smoke = SPEC["smoke"]
    cfg = EvalConfig(corpus=SPEC["corpus"], split=SPEC["split"], retrievers=tuple(smoke["expected"]),
                     n=smoke["n"], seed=smoke["seed"], retrieval_only=True)
    run_dir = run_eval(cfg, out=tmp_path / "smoke", progress=False, report=False)
    check(run_dir, smoke["expected"], SPEC["tolerance"])


@pytest.mark.slow
def test_full_test_split_within_tolerance(tmp_path):
    full = SPEC["full"]
    cfg = EvalConfig(corpus=SPEC["corpus"], split=SPEC["split"], retrievers=tuple(full["expected"]),
                     retrieval_only=True)
    run_dir = run_eval(cfg, out=tmp_path / "full", progress=False, report=False)
    check(run_dir, full["expected"], SPEC["tolerance"])
