"""Which RAGAS metrics to trust with this judge: cost, failures and agreement with gold truth.

In:  judged samples (ragas.jsonl records: {qid, metrics: {name: {value, status, seconds}}}) and the
     gold-based truth per sample (answers.jsonl "qa": em, f1, answer_in_context,
     citation_precision), pooled over retrievers as (retriever, qid) samples.
Out: one MetricChoice per metric: seconds per sample (over every attempt: a failure costs time
     too), failure rate (parse errors, timeouts, NaN, errors over attempts: counted, never averaged
     away), Spearman agreement with each truth over the valid samples, AUC against EM, and whether
     it joins the default set: agreement with its own truth >= MIN_AGREEMENT, <= MAX_SECONDS per
     sample, failure rate <= MAX_FAILURE_RATE.
Each metric is held to the truth that measures the same thing (TRUTH_OF): faithfulness to
citation precision, context metrics to answer-in-context, answer metrics to F1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_AGREEMENT = 0.3      # Spearman: weaker than this and the judge's number is mostly noise here
MAX_SECONDS = 20.0       # per sample: 100 samples x 4 retrievers must finish overnight on 2 cores
MAX_FAILURE_RATE = 0.2
TRUTHS = ("em", "f1", "answer_in_context", "citation_precision")
TRUTH_OF = {
    "faithfulness": "citation_precision", "response_groundedness": "citation_precision",
    "context_precision": "answer_in_context", "context_precision_noref": "answer_in_context",
    "context_recall": "answer_in_context", "context_relevance": "answer_in_context",
    "answer_relevancy": "f1", "factual_correctness": "f1", "answer_correctness": "f1",
    "answer_accuracy": "f1",
}


@dataclass(frozen=True)
class MetricChoice:
    metric: str
    n: int                          # samples attempted
    n_failed: int
    seconds_per_sample: float
    truth: str                      # the truth it is selected on
    agreement: float | None         # Spearman with `truth` (None: undefined, e.g. constant values)
    spearman: dict = field(default_factory=dict)   # truth -> Spearman (None where undefined)
    auc_em: float | None = None
    selected: bool = False
    why: str = ""

    @property
    def failure_rate(self) -> float:
        return self.n_failed / self.n if self.n else 0.0


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their average rank
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    """Rank correlation; None when fewer than 2 pairs or either side is constant."""
    if len(a) < 2 or len(a) != len(b):
        return None
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va and vb else None


def auc(scores: list[float], labels: list[float]) -> float | None:
    """P(score of a right answer > score of a wrong one), ties count half; None without both kinds."""
    pos = [s for s, y in zip(scores, labels) if y >= 0.5]
    neg = [s for s, y in zip(scores, labels) if y < 0.5]
    if not pos or not neg:
        return None
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def choose(judged: dict, truth: dict, min_agreement: float = MIN_AGREEMENT,
           max_seconds: float = MAX_SECONDS, max_failure_rate: float = MAX_FAILURE_RATE) -> list[MetricChoice]:
    """judged: sample id -> {metric: {value, status, seconds}}; truth: sample id -> {em, f1, ...}."""
    names = sorted({m for entries in judged.values() for m in entries})
    out = []
    for name in names:
        entries = {sid: e[name] for sid, e in judged.items() if name in e}
        ok = {sid: float(e["value"]) for sid, e in entries.items()
              if e.get("status") == "ok" and e.get("value") is not None and not math.isnan(e["value"])}
        failed = len(entries) - len(ok)
        secs = sum(float(e.get("seconds") or 0.0) for e in entries.values()) / max(1, len(entries))
        rho = {}
        for t in TRUTHS:
            pairs = [(v, truth[sid][t]) for sid, v in ok.items() if truth.get(sid, {}).get(t) is not None]
            rho[t] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
        em_pairs = [(v, truth[sid]["em"]) for sid, v in ok.items() if truth.get(sid, {}).get("em") is not None]
        t_name = TRUTH_OF.get(name, "f1")
        agree = rho.get(t_name)
        why = []
        if agree is None or agree < min_agreement:
            why.append(f"agreement with {t_name} {'undefined' if agree is None else f'{agree:.2f}'} "
                       f"< {min_agreement}")
        if secs > max_seconds:
            why.append(f"{secs:.1f} s/sample > {max_seconds:.0f}")
        if len(entries) and failed / len(entries) > max_failure_rate:
            why.append(f"{failed}/{len(entries)} failed")
        out.append(MetricChoice(name, len(entries), failed, round(secs, 3), t_name, agree, rho,
                                auc([p[0] for p in em_pairs], [p[1] for p in em_pairs]),
                                selected=not why, why="; ".join(why) or "agrees, affordable, reliable"))
    return out


def pooled_samples(records: dict[str, list[dict]], judged: dict[str, list[dict]]) -> tuple[dict, dict]:
    """(judged, truth) keyed by "retriever/qid" from the run's answer and ragas records."""
    j, t = {}, {}
    for name, rows in judged.items():
        qa = {r["qid"]: r.get("qa") or {} for r in records.get(name, [])}
        for r in rows:
            sid = f"{name}/{r['qid']}"
            j[sid] = r.get("metrics") or {}
            t[sid] = {k: qa.get(r["qid"], {}).get(k) for k in TRUTHS}
    return j, t


def table(choices: list[MetricChoice]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for the report."""
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    head = ["metric", "s/sample", "failed", "truth", "agreement"] + [f"rho {t}" for t in TRUTHS] + \
           ["AUC vs EM", "default", "why"]
    rows = [[c.metric, f"{c.seconds_per_sample:.1f}", f"{c.n_failed}/{c.n}", c.truth, f(c.agreement)]
            + [f(c.spearman.get(t)) for t in TRUTHS] + [f(c.auc_em), "yes" if c.selected else "no", c.why]
            for c in choices]
    return head, rows
