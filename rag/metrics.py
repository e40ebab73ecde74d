"""The one IR metric implementation: TREC run files + qrels in, per-query and mean metrics out.

Used by the trainer's dev evaluation, the batch harness and the app, so they all report the
same numbers. Ties are broken like trec_eval (score descending, then docid descending).
Metric keys look like `ndcg@10`, `recall@5`, `mrr@10`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

Run = Mapping[str, Mapping[str, float]]     # qid -> docid -> score
Qrels = Mapping[str, Mapping[str, int]]     # qid -> docid -> relevance grade

DEFAULT_METRICS = ("recall@1", "recall@5", "recall@10", "recall@20", "mrr@10", "ndcg@10")


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels (`qid iter docid rel`) or BEIR's TSV (`query-id corpus-id score`, header line
    optional), whitespace- or tab-separated."""
    from rag.errors import UserError

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"qrels file {path} not found" + (" (it is a folder)" if path.is_dir() else "") +
                        ": give a TREC qrels file (qid 0 docid rel) or BEIR's qrels/<split>.tsv.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8.") from None
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rel = parts[-1].removeprefix("-").replace(".", "", 1)
        if len(parts) in (3, 4) and rel.isdigit():
            qid, docid = parts[0], parts[-2]
            qrels.setdefault(qid, {})[docid] = int(float(parts[-1]))
        elif not (n == 1 and len(parts) in (3, 4)):  # line 1 may be BEIR's "query-id corpus-id score"
            raise UserError(f"{path}:{n}: qrels lines are 'qid iter docid rel' (TREC) or 'query-id corpus-id "
                            f"score' (BEIR), got {line!r}")
    return qrels


def write_run(path: str | Path, run: Run, tag: str = "distilrag") -> None:
    """TREC run format: qid Q0 docid rank score tag."""
    from rag.records import _atomic_text

    lines = []
    for qid, docs in run.items():
        for rank, (docid, score) in enumerate(ranked(docs), 1):
            lines.append(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    _atomic_text(Path(path), "".join(lines))


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    """A TREC run file (gzip-compressed when its name ends in .gz)."""
    import gzip

    path = Path(path)
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    run: dict[str, dict[str, float]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise ValueError(f"{path}:{n}: run lines are 'qid Q0 docid rank score tag', got {line!r}")
        run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run


def ranked(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)


def _parse(metric: str) -> tuple[str, int]:
    name, _, k = metric.partition("@")
    if name not in {"recall", "mrr", "ndcg", "precision"} or not k.isdigit():
        raise ValueError(f"Unknown metric {metric!r}; use e.g. recall@5, mrr@10, ndcg@10, precision@5.")
    return name, int(k)


def order_metric(order: list[str], rels: Mapping[str, int], metric: str) -> float:
    """One metric for one ranked list of docids against graded relevance."""
    name, k = _parse(metric)
    top = order[:k]
    n_rel = sum(1 for r in rels.values() if r > 0)
    if name == "recall":
        return sum(1 for d in top if rels.get(d, 0) > 0) / n_rel if n_rel else 0.0
    if name == "precision":
        return sum(1 for d in top if rels.get(d, 0) > 0) / k
    if name == "mrr":
        return next((1.0 / i for i, d in enumerate(top, 1) if rels.get(d, 0) > 0), 0.0)
    dcg = sum((2 ** rels.get(d, 0) - 1) / math.log2(i + 1) for i, d in enumerate(top, 1))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum((2 ** r - 1) / math.log2(i + 1) for i, r in enumerate(ideal, 1))
    return dcg / idcg if idcg else 0.0


def per_query(run: Run, qrels: Qrels, metrics: Iterable[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """metric -> qid -> value, over the judged queries (a judged query missing from the run scores 0)."""
    metrics = list(metrics)
    out: dict[str, dict[str, float]] = {m: {} for m in metrics}
    for qid, rels in qrels.items():
        if not any(r > 0 for r in rels.values()):
            continue
        order = [d for d, _ in ranked(run.get(qid, {}))]
        for m in metrics:
            out[m][qid] = order_metric(order, rels, m)
    return out


def evaluate(run: Run, qrels: Qrels, metrics: Iterable[str] = DEFAULT_METRICS,
             qids: Iterable[str] | None = None) -> dict[str, float]:
    """Mean of each metric over the judged queries (restricted to `qids` when given)."""
    if qids is not None:
        keep = set(qids)
        qrels = {q: r for q, r in qrels.items() if q in keep}
    pq = per_query(run, qrels, metrics)
    return {m: (sum(v.values()) / len(v) if v else 0.0) for m, v in pq.items()}


def kendall_tau(order_a: list[str], order_b: list[str]) -> float:
    """Kendall's tau-a between two orders of the same items (1 = identical, -1 = reversed)."""
    pos = {d: i for i, d in enumerate(order_b)}
    items = [d for d in order_a if d in pos]
    n = len(items)
    if n < 2:
        return 1.0
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            if pos[items[i]] < pos[items[j]]:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / (n * (n - 1) / 2)
