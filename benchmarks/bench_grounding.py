"""What the chain's grounding rules do to answers already paid for: no LLM call, seconds.

    python benchmarks/bench_grounding.py [--qa runs/eval/qa500] [--absent runs/eval/not_in_corpus]

In:  two evaluation runs' answer records (<run>/<retriever>/answers.jsonl): one over questions
     with gold answers (--qa), one over questions whose answer is not in the corpus (--absent,
     from eval/data/not_in_corpus.jsonl). Each record's LLM text (model_answer, else answer) is
     put through rag.grounding as the chain would.
Out: printed tables (docs/qa-squad_dev.md quotes them):
     - citations: the share of cited passages holding a gold answer, as the LLM cited and after
       repair_citations, and how many answers it re-pointed;
     - withholding: for thresholds around WITHHOLD_BELOW, how many answers holding the gold answer
       would be withheld (lost), how many wrong ones, and how many answers to absent-answer
       questions (each one unsupported: the right outcome there is to abstain);
     - the absent-answer questions as the chain shows them: abstained, withheld, answered with an
       unsupported warning, or shown as fact.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.67, 0.75, 1.0)


def answered(run: Path) -> list[dict]:
    """The last answered record per (retriever, question) of a run."""
    out = []
    for f in sorted(run.glob("*/answers.jsonl")):
        if ".replaced-" in f.parent.name:
            continue
        last = {}
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r.get("answer") is not None and not r.get("error"):
                last[r["qid"]] = r
        out += last.values()
    return out


def main(argv=None) -> None:
    from eval.qa_metrics import qa_scores
    from rag.citations import parse_citations
    from rag.grounding import WITHHOLD_BELOW, coverage, repair_citations
    from rag.prompts import is_no_answer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=Path("runs/eval/qa500"))
    ap.add_argument("--absent", type=Path, default=Path("runs/eval/not_in_corpus"))
    ap.add_argument("--absent-questions", type=Path, default=Path("eval/data/not_in_corpus.jsonl"),
                    help="the questions of --absent to count (a run may hold answers to ones since replaced)")
    a = ap.parse_args(argv)

    from rag.questions import read_questions

    asked = {q.qid for q in read_questions(a.absent_questions)}
    gold, absent = answered(a.qa), [r for r in answered(a.absent) if r["qid"] in asked]
    rows = []  # (coverage, holds gold, cited precision as written, after repair, re-pointed)
    for r in gold:
        text, ctx = r.get("model_answer") or r["answer"], r.get("contexts") or []
        if is_no_answer(text):
            continue
        fixed = repair_citations(text, ctx, r["question"])
        own = qa_scores(text, r["references"], ctx, [ctx[n - 1] for n in parse_citations(text, len(ctx))])
        new = qa_scores(fixed, r["references"], ctx, [ctx[n - 1] for n in parse_citations(fixed, len(ctx))])
        rows.append((coverage(text, ctx, r["question"]), own["answer_contains_ref"],
                     own.get("citation_precision"), new.get("citation_precision"), fixed != text))
    cited = [(o, n) for _, _, o, n, _ in rows if o is not None and n is not None]
    print(f"{a.qa}: {len(gold)} answers, {len(rows)} not abstaining")
    print(f"citation precision as the LLM cited {sum(o for o, _ in cited) / len(cited):.3f}, after repair "
          f"{sum(n for _, n in cited) / len(cited):.3f} (n {len(cited)}); re-pointed {sum(r[4] for r in rows)}")
    spoke = [r for r in absent if not is_no_answer(r.get("model_answer") or r["answer"])]
    print(f"{a.absent}: {len(absent)} answers, {len(spoke)} not abstaining (unsupported: "
          f"{len(spoke) / max(1, len(absent)):.3f})")
    abs_cov = [coverage(r.get("model_answer") or r["answer"], r.get("contexts") or [], r["question"]) for r in spoke]
    right = [c for c, ok, *_ in rows if ok]
    wrong = [c for c, ok, *_ in rows if not ok]
    print("\n| withhold below | holding gold, withheld | wrong, withheld | absent-answer, withheld | "
          "absent-answer unsupported after |")
    print("|---|---|---|---|---|")
    for t in THRESHOLDS:
        def n(cs):
            return sum(1 for c in cs if c is not None and c < t)
        mark = " (default)" if t == WITHHOLD_BELOW else ""
        print(f"| {t:.2f}{mark} | {n(right)} of {len(right)} | {n(wrong)} of {len(wrong)} | "
              f"{n(abs_cov)} of {len(abs_cov)} | {(len(spoke) - n(abs_cov)) / max(1, len(absent)):.3f} |")
    shown = [shown_as(r) for r in absent]
    count = {k: shown.count(k) for k in ("abstained", "withheld", "warned", "fact")}
    print(f"\nabsent-answer questions as the chain shows them ({len(absent)}): {count['abstained']} abstained, "
          f"{count['withheld']} withheld, {count['warned']} with an unsupported warning, {count['fact']} as fact: "
          f"shown as fact {count['fact'] / max(1, len(absent)):.3f} (before the checks {len(spoke) / max(1, len(absent)):.3f})")


def shown_as(r: dict) -> str:
    """How the chain presents a recorded answer, by the harness's own checks (eval.answer_checks,
    brought to today's rule): withheld, abstained, warned (cited passages lack its words) or fact."""
    from eval.answer_checks import add_checks

    checks = add_checks(r, ("lexical",))["checks"]
    if checks["withheld"]:
        return "withheld"
    if checks["abstained"]:
        return "abstained"
    return "warned" if checks.get("unsupported_lexical") else "fact"


if __name__ == "__main__":
    main()
