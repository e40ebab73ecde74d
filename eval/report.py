"""The evaluation report: side-by-side table, paired bootstrap vs the base retriever, plots.

    distilrag eval report runs/eval/<name>         (also written at the end of every eval run)

In:  a run directory of eval/run.py (summary.json, <retriever>/answers.jsonl, ragas.jsonl) and,
     for the label-efficiency curve, the trainer run directories of the same corpus (config.json's
     label.corpus), their runs/*/metrics.json holding either
     {"label_efficiency": [{"n_labels": 250, "ndcg@10": 0.81}, ...]} or one point
     {"n_labels": 1000, "dev": {"ndcg@10": 0.8}} (read as files; the trainer's code is not imported).
Out: report.md, report.html, comparisons.json, agreement.json, ragas_selection.json (which RAGAS
     metrics agree with the gold truth at what cost: eval/ragas_select.py) and plots/{metric_bars,deltas,
     recall_curve,label_efficiency}.png. Bootstrap and plots are seeded: the same run gives the
     same report.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

from eval.metrics_table import agreement, per_question
from rag.stats import bootstrap_ci, paired_by_qid

BAR_METRICS = ("ndcg@10", "recall@1", "recall@5", "mrr@10", "answer_in_context", "f1", "em")
# Per-answer rates beside them (eval/answer_checks.py): abstention and grounding need no gold answer.
ANSWER_METRICS = ("answer_contains_ref", "citation_precision", "abstained", "unsupported_lexical",
                  "unsupported_llm")
SEED = 0


def _load(run_dir: Path):
    from eval.questions import eval_qrels
    from eval.ragas_eval import read_judgements
    from rag.records import read_jsonl

    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = summary["config"]
    qrels = eval_qrels(cfg["corpus"], cfg.get("queries", ""), cfg.get("qrels", "")) if summary.get("has_qrels") else None
    # The questions the summary covers (a resumed run's files may hold a later round's answers too);
    # a summary written before it recorded them covers every answer.
    keep = set(summary.get("questions", {}).get("qids") or ())
    recs, judged = {}, {}
    for name in summary["retrievers"]:
        d = run_dir / name
        last = {}
        for r in read_jsonl(d / "answers.jsonl"):
            if not r.get("error") and (not keep or r["qid"] in keep):
                last[r["qid"]] = r
        recs[name] = list(last.values())
        judged[name] = [j for j in read_judgements(d / "ragas.jsonl") if not keep or j["qid"] in keep]
    return summary, qrels, recs, judged


def baseline_of(names: list[str]) -> str:
    return "base" if "base" in names else names[0]


def comparisons(pq: dict[str, dict], judged: dict[str, list], base: str) -> dict:
    """Every retriever vs the baseline on every metric both have per-question values for."""
    from eval.ragas_eval import per_question_values

    out = {}
    for name in pq:
        if name == base:
            continue
        rows = {m: paired_by_qid(pq[base][m], pq[name][m], seed=SEED)
                for m in pq[name] if m in pq[base]}
        metrics = {k for r in judged.get(name, []) for k in r["metrics"]}
        for m in sorted(metrics):
            a, b = per_question_values(judged[base], m), per_question_values(judged[name], m)
            if set(a) & set(b):
                rows[f"ragas:{m}"] = paired_by_qid(a, b, seed=SEED)
        out[f"{name} vs {base}"] = rows
    return out


def label_efficiency_points(runs_root: Path, corpus: str, metric: str = "ndcg@10") -> list[tuple[str, float, float]]:
    """(run, n_labels, metric) points from the trainer run directories made for `corpus` (their
    config.json's label.corpus; another corpus's dev figures are not on this scale)."""
    from rag.corpus import corpus_key

    want, pts = corpus_key(corpus), []
    for f in sorted(runs_root.glob("*/metrics.json")):
        try:
            m = json.loads(f.read_text())
            made_for = json.loads((f.parent / "config.json").read_text())["label"]["corpus"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if corpus_key(made_for) != want:
            continue
        for p in m.get("label_efficiency") or []:
            if isinstance(p, dict) and metric in p and "n_labels" in p:
                pts.append((f.parent.name, float(p["n_labels"]), float(p[metric])))
        if "n_labels" in m:
            val = m.get(metric, (m.get("dev") or {}).get(metric) if isinstance(m.get("dev"), dict) else None)
            if isinstance(val, (int, float)):
                pts.append((f.parent.name, float(m["n_labels"]), float(val)))
    return sorted(pts, key=lambda p: p[1])


def plots(run_dir: Path, pq: dict, summary: dict, comps: dict, base: str) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        print("no plots: `pip install matplotlib` (the eval extra)", file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rag.settings import runs_dir

    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    made = []
    names = list(pq)
    mets = [m for m in BAR_METRICS if any(pq[n].get(m) for n in names)]
    if mets:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(mets) * max(1, len(names)) / 2), 4))
        w = 0.8 / len(names)
        for i, n in enumerate(names):
            vals, lo, hi = [], [], []
            for m in mets:
                v = list(pq[n].get(m, {}).values())
                mu = float(np.mean(v)) if v else 0.0
                ci = bootstrap_ci(v, seed=SEED) if v else (mu, mu)
                vals.append(mu)
                lo.append(mu - ci[0])
                hi.append(ci[1] - mu)
            ax.bar(np.arange(len(mets)) + i * w, vals, w, yerr=[lo, hi], capsize=3, label=n)
        ax.set_xticks(np.arange(len(mets)) + 0.4 - w / 2, mets)
        ax.set_ylim(0, 1)
        ax.set_title("Mean per retriever (95% bootstrap CI)")
        made.append(_save(fig, ax, out_dir / "metric_bars.png"))
    key = next((m for m in ("ndcg@10", "f1", "answer_in_context") if pq.get(base, {}).get(m)), None)
    if key and len(names) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for n in names:
            if n == base or not pq[n].get(key):
                continue
            common = sorted(set(pq[base][key]) & set(pq[n][key]))
            d = sorted(pq[n][key][q] - pq[base][key][q] for q in common)
            ax.plot(np.linspace(0, 1, len(d)), d, label=f"{n} - {base}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("questions (sorted by delta)")
        ax.set_ylabel(f"per-question delta {key}")
        made.append(_save(fig, ax, out_dir / "deltas.png"))
    curves = {n: m.get("recall_curve") for n, m in summary["retrievers"].items() if m.get("recall_curve")}
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for n, c in curves.items():
            ax.plot([int(k) for k in c], list(c.values()), marker="o", label=n)
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k")
        made.append(_save(fig, ax, out_dir / "recall_curve.png"))
    pts = label_efficiency_points(runs_dir(), summary["config"]["corpus"])
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label="distilled (dev)")
        base_ndcg = summary["retrievers"].get(base, {}).get("ir", {}).get("ndcg@10")
        if base_ndcg is not None:
            ax.axhline(base_ndcg, color="grey", ls="--", label=f"{base} (this eval)")
        ax.set_xlabel("LLM-labelled queries")
        ax.set_ylabel("nDCG@10")
        made.append(_save(fig, ax, out_dir / "label_efficiency.png"))
    return made


def _save(fig, ax, path: Path) -> str:
    """Legend, layout, write, close: the same last steps for every plot."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _sections(summary, pq, comps, judged, agree, images, base, selection=()):
    """Report content as (kind, title, payload) so markdown and HTML say the same thing."""
    cfg = summary["config"]
    mode = "retrieval only" if cfg["retrieval_only"] else f"top-{cfg['top_k']} passages to the LLM"
    questions = f"questions `{Path(cfg['queries']).name}`" if cfg.get("queries") else f"split `{cfg['split'] or 'all'}`"
    s = [("p", None, f"Corpus `{cfg['corpus']}` {questions}, {mode}, "
                     f"n={cfg['n'] or 'all'}, seed {cfg['seed']}.")]
    q = summary.get("questions", {})
    if q and q["answered_by_all"] < q["asked"]:
        s.append(("p", None, f"**Partial run**: {q['answered_by_all']} of {q['asked']} questions answered by "
                             "every retriever so far (a seeded random part); rerun the same command to go on."))
    for spec, why in summary.get("skipped", {}).items():
        s.append(("p", None, f"Skipped `{spec}`: {why}"))
    names = list(summary["retrievers"])
    cols = [m for m in BAR_METRICS + ANSWER_METRICS if any(pq[n].get(m) for n in names)]
    rows = []
    for n in names:
        m = summary["retrievers"][n]
        row = [n, str(m["n_answered"]), str(m.get("n_errors", 0))]
        for c in cols:
            v = list(pq[n].get(c, {}).values())
            lo, hi = bootstrap_ci(v, seed=SEED) if v else (None, None)
            row.append(f"{sum(v) / len(v):.3f} [{lo:.3f}, {hi:.3f}]" if v else "-")
        lat = m.get("latency_s", {})
        row.append(_fmt(lat.get("total_s", lat.get("retrieve_s", {})).get("mean")))
        row.append(_fmt((m.get("answers") or {}).get("no_answer_rate")))
        rows.append(row)
    s.append(("table", "Retrievers side by side (mean [95% CI])",
              (["retriever", "n", "failed"] + cols + ["latency s", "no-answer"], rows)))
    for title, comp in comps.items():
        crow = [[m, _fmt(r["mean_a"]), _fmt(r["mean_b"]), f"{r['delta']:+.3f}",
                 f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"{r['p_value']:.4f}", str(r["n"])]
                for m, r in comp.items()]
        s.append(("table", f"Paired bootstrap: {title}", (["metric", base, title.split(' vs ')[0], "delta",
                                                           "95% CI", "p", "n"], crow)))
    rg = []
    for n in names:
        for m, e in (summary["retrievers"][n].get("ragas") or {}).items():
            rg.append([n, m, _fmt(e["mean"]), f"{e['n_ok']}/{e['n']}", str(e["n_parse_error"]),
                       str(e["n_timeout"]), str(e["n_nan"]), str(e["n_error"]), _fmt(e["seconds_mean"])])
    if rg:
        s.append(("table", "RAGAS (mean over valid judgements; failures counted, not averaged)",
                  (["retriever", "metric", "mean", "valid", "parse fail", "timeout", "NaN", "error", "s/sample"], rg)))
    if selection:
        from eval.ragas_select import MAX_FAILURE_RATE, MAX_SECONDS, MIN_AGREEMENT, table

        s.append(("table", f"RAGAS metric selection (default set: Spearman with its truth >= "
                           f"{MIN_AGREEMENT}, <= {MAX_SECONDS:.0f} s/sample, <= {MAX_FAILURE_RATE:.0%} failed)",
                  table(list(selection))))
    if agree:
        s.append(("table", "Retrieval agreement (no gold labels needed)",
                  (["pair"] + list(next(iter(agree.values()))), [[k] + [_fmt(x) for x in v.values()] for k, v in agree.items()])))
    for img in images:
        s.append(("img", img, f"plots/{img}"))
    return s


def _markdown(sections) -> str:
    out = ["# Evaluation report", ""]
    for kind, title, payload in sections:
        if kind == "p":
            out += [payload, ""]
        elif kind == "table":
            head, rows = payload
            out += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        else:
            out += [f"![{title}]({payload})", ""]
    return "\n".join(out)


def _html(sections) -> str:
    e = html.escape
    out = ["<!doctype html><meta charset='utf-8'><title>Evaluation report</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style><h1>Evaluation report</h1>"]
    for kind, title, payload in sections:
        if kind == "p":
            out.append(f"<p>{e(payload)}</p>")
        elif kind == "table":
            head, rows = payload
            out.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
        else:
            out.append(f"<h2>{e(title)}</h2><img src='{e(payload)}' alt='{e(title)}'>")
    return "\n".join(out) + "\n"


def write_report(run_dir: str | Path) -> Path:
    from rag.records import _atomic_text, write_json

    run_dir = Path(run_dir)
    summary, qrels, recs, judged = _load(run_dir)
    pq = {n: per_question(r, qrels) for n, r in recs.items()}
    base = baseline_of(list(pq))
    comps = comparisons(pq, judged, base)
    agree = agreement(recs, k=summary["config"].get("top_k", 5)) if len(recs) > 1 else {}
    write_json(run_dir / "comparisons.json", comps)
    write_json(run_dir / "agreement.json", agree)
    selection = []
    if any(judged.values()):
        from dataclasses import asdict

        from eval.ragas_select import choose, pooled_samples

        selection = choose(*pooled_samples(recs, judged))
        write_json(run_dir / "ragas_selection.json", [asdict(c) for c in selection])
    images = plots(run_dir, pq, summary, comps, base)
    sections = _sections(summary, pq, comps, judged, agree, images, base, selection)
    _atomic_text(run_dir / "report.md", _markdown(sections))
    _atomic_text(run_dir / "report.html", _html(sections))
    return run_dir / "report.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="distilrag eval report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="an eval run directory (runs/eval/<name>)")
    a = ap.parse_args(argv)
    if not (Path(a.run_dir) / "summary.json").exists():
        print(f"error: {a.run_dir} has no summary.json; run `distilrag eval ...` first.", file=sys.stderr)
        return 2
    print(write_report(a.run_dir).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
