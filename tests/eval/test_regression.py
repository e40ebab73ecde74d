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


def _readme_rows() -> dict[str, tuple[str, str]]:
    """{spec: (nDCG@10, R@5)} of the README's results table, as printed."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Results", 1)[1].split("Reproduce", 1)[0]
    rows = {}
    for line in (ln for ln in section.splitlines() if ln.startswith("|")):
        cells = [c.strip().strip("*`") for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[1] and not cells[1].startswith("-") and cells[1] != "`--retrievers` spec":
            rows.setdefault(cells[1], (cells[2].strip("*"), cells[3].strip("*")))
    return rows


def _fmt(x: float) -> str:
    return f"{x:.3f}".removeprefix("0")


def test_readme_results_quote_the_regression_spec():
    """The README's figures are the spec's (checked by the tests above and the slow retrain test),
    never retyped: a changed spec without a changed README fails here."""
    rows = _readme_rows()
    run = SPEC["retrain"]["run"]
    want = {**SPEC["expected"], **{k.replace("distilled", f"{run}/student"): v
                                   for k, v in SPEC["retrain"]["expected"].items()}}
    for spec, metrics in want.items():
        assert spec in rows, f"README results table has no row for {spec}"
        assert rows[spec] == (_fmt(metrics["ndcg@10"]), _fmt(metrics["recall@5"])), spec


@pytest.mark.slow
def test_shipped_retrain_within_tolerance(tmp_path, monkeypatch):
    """The shipped retrain from the committed labels, then the harness (its time: docs/experiments-squad_dev.md)."""
    from rag.config import load_sections
    from retriever_training.retrain import SECTIONS, retrain

    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    spec = SPEC["retrain"]
    cfgs = load_sections(Path(__file__).resolve().parents[2] / spec["config"], SECTIONS,
                         ["run.name=regression", "run.set_default=false"])
    retrain(cfgs, progress=False)
    student = str(tmp_path / "runs" / "regression" / "student")
    specs = {name: name.replace("distilled", student) for name in spec["expected"]}
    cfg = EvalConfig(corpus=SPEC["corpus"], split=SPEC["split"], retrievers=tuple(specs.values()),
                     retrieval_only=True)
    run_dir = run_eval(cfg, out=tmp_path / "eval", progress=False, report=False)
    from rag.pipelines import slug

    for name, s in specs.items():
        got = json.loads((run_dir / slug(s) / "metrics.json").read_text())["ir"]
        for m, want in spec["expected"][name].items():
            assert got[m] == pytest.approx(want, abs=spec["tolerance"]), f"{name} {m}: {got[m]:.4f}, spec {want}"
