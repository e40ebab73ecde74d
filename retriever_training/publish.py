"""Stage 7 — publish: the distilled retriever as a model directory plus its model card.

    distilrag retrain --config ...   (stage "publish"; --force publishes a student worse than base)

In:  <run>/student/, the run's metrics (label report, ranker agreement, distillation dev metrics,
     the verdict on the held-out labelled queries, the gold test report), the labelling ledger and
     provenance, the resolved config
Out: <run>/model/ — loads with plain `SentenceTransformer(path)`; README.md (model card) and
     distilrag_card.json (the same facts, machine-readable) inside it, both stating the verdict in
     one sentence. The gate is verdict.refusal: a student whose held-out nDCG@10 is not above the
     base's is not published (--force overrides); then "distilled" and "ranker" name the new models
     for the index, chain, app and harness.
"""
from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from rag.errors import UserError


class NotBetterThanBase(UserError, RuntimeError):
    def __init__(self, message: str, sentence: str = "", served: str = ""):
        super().__init__(message)
        self.sentence = sentence  # the verdict in one sentence
        self.served = served      # what serves the corpus now, printed last


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "sentence-transformers", "llama-cpp-python", "faiss-cpu",
                 "llama-index-core"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def gate(card: ModelCard) -> str | None:
    """Why not to publish (None: publish). The verdict on the held-out queries and the gold test
    split decide (verdict.refusal); a run without either falls back to the dev metrics."""
    from retriever_training.verdict import refusal

    verdict, test = card.verdict, card.heldout
    if verdict.get("queries") or test.get("queries"):
        return refusal(verdict, test)
    dev = card.distill
    base, best = dev.get("base_dev", {}).get("ndcg@10"), dev.get("best_dev", {}).get("ndcg@10")
    if base is not None and best is not None and best <= base:
        return f"not better than the base on dev (nDCG@10 {best:.4f} vs {base:.4f})"
    return None


def model_card(card: ModelCard) -> str:
    from retriever_training.heldout import heldout_card_section
    from retriever_training.verdict import card_section

    dev = card.distill
    base, best = dev.get("base_dev", {}), dev.get("best_dev", {})
    rows = "\n".join(f"| {k} | {base.get(k, float('nan')):.4f} | {best.get(k, float('nan')):.4f} | "
                     f"{best.get(k, 0) - base.get(k, 0):+.4f} |" for k in sorted(best) if k in base)
    t, r, distill_cfg = card.teacher, card.ranker, card.config.get("distill", {})
    return f"""---
library_name: sentence-transformers
base_model: sentence-transformers/all-MiniLM-L6-v2
tags: [sentence-transformers, retrieval, distillation, distilrag]
---
# {card.name}

A dense retriever distilled from an LLM's rankings through an intermediate cross-encoder
(LLM -> ranker -> retriever). Load it with `SentenceTransformer("<this directory>")`.

**Verdict.** {card.verdict_sentence or '(not recorded)'}

- Created: {card.created}
- Corpus: {card.corpus}; labelled queries: {t.get('queries')} (label set sha256 {str(t.get('label_set_sha256', ''))[:16]})
- Queries used: {_queries_used(card.queries_used)}
- Teacher LLM: {t.get('model')} (mode {t.get('mode')}, prompt {t.get('prompt_id')})
- Ranker: cross-encoder from the MiniLM backbone, loss {r.get('loss')}; agreement with the LLM on
  held-out queries: Kendall tau {r.get('kendall_tau_vs_llm', float('nan')):.3f}, top-1 {r.get('top1_agreement_vs_llm', float('nan')):.3f}
  (the first-stage order's top-1: {r.get('first_stage_top1_agreement_vs_llm', float('nan')):.3f})
- Distillation: loss {distill_cfg.get('loss')}, best epoch {dev.get('best_epoch')},
  {dev.get('train_examples')} teacher-scored queries; seed {distill_cfg.get('seed')}
- LLM cost ledger: {json.dumps(card.ledger)}

## Dev retrieval (whole corpus, {dev.get('dev_queries')} queries: {dev.get('dev_source', 'dev split (gold qrels)')})
| metric | base | distilled | delta |
|---|---|---|---|
{rows}

{card_section(card.verdict)}{heldout_card_section(card.heldout)}## Configuration
```json
{json.dumps(card.config, indent=1)}
```

## Package versions
{json.dumps(card.versions)}
"""


def _front_matter(text: str) -> tuple[str, str]:
    """(YAML front matter without its --- lines, the rest) of a Hugging Face model card."""
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        head, _, body = text[4:].partition("\n---\n")
        return head, body
    return "", text


def merge_cards(ours: str, generated: str) -> str:
    """Our lineage card first, then the card sentence-transformers generated (its training
    details, hyperparameters and citations kept whole), under one front matter: the generated
    one's fields, with our tags added."""
    if not generated.strip():
        return ours
    import yaml

    our_head, our_body = _front_matter(ours)
    gen_head, gen_body = _front_matter(generated)
    meta = yaml.safe_load(gen_head) or {}
    mine = yaml.safe_load(our_head) or {}
    meta["tags"] = list(dict.fromkeys([*(meta.get("tags") or []), *(mine.get("tags") or [])]))
    for k, v in mine.items():
        meta.setdefault(k, v)
    return ("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + our_body.rstrip()
            + "\n\n# Generated by sentence-transformers\n" + gen_body.lstrip())


def _queries_used(used: dict) -> str:
    if not used:
        return "(not recorded)"
    return (f"{used['labelled']} LLM-labelled ({used['heldout']} of them held out: neither ranker nor student "
            f"saw them), {used['unlabelled_from_log']} unlabelled from the query log or split, "
            f"{used['unlabelled_synthetic']} synthetic, both scored by the ranker only")


def serve_without_student(run_dir: Path, card: ModelCard, refused: str) -> str:
    """A refused student still leaves a verdict on the pipelines that need no student (dense base,
    BM25, hybrid, each with the run's ranker): unless a distilled model published earlier serves the
    corpus, the best of them becomes what the chat, `ask` and `eval` use, instead of the dense base
    by default, and the run's ranker (measured there, never refused) is published with it. What it
    did, in a sentence ("" if nothing); `refused`, the verdict's sentence, is kept for the chat to show."""
    from rag.embedder import published_path, set_published
    from rag.records import write_json
    from retriever_training.verdict import serving_line, without_student

    if published_path("distilled", card.corpus) is not None:
        return "The distilled retriever published earlier for this corpus stays in use."
    kept = without_student(card.verdict)
    if not kept["pipelines"]:
        return ""
    if (run_dir / "ranker").exists():
        set_published("ranker", run_dir / "ranker", card.corpus)
    write_json(run_dir / "pipelines.json", {**kept, "refused": refused})
    set_published("pipelines", run_dir / "pipelines.json", card.corpus)
    return serving_line(kept)


def publish(run_dir: Path, card: ModelCard, force: bool = False, make_default: bool = True) -> Path:
    """Copy the student to <run>/model with its card; refuse one not better than the base unless forced."""
    from dataclasses import replace

    from rag.embedder import set_published
    from rag.records import to_dict
    from retriever_training.verdict import sentence

    why = gate(card)
    if why and not force:
        refused = sentence(card.verdict, "not published", card.heldout)
        served = serve_without_student(run_dir, card, refused) if make_default else ""
        raise NotBetterThanBase(f"the distilled retriever is {why}. Inspect {run_dir}/verdict.json, or pass "
                                "--force to publish it anyway.", refused, served)
    card = replace(card, verdict_sentence=sentence(card.verdict, "published with --force" if why else "published",
                                                   card.heldout))
    out = run_dir / "model"
    tmp = run_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run_dir / "student", tmp)
    card = replace(card, created=card.created or time.strftime("%Y-%m-%dT%H:%M:%S"), versions=package_versions())
    generated = tmp / "README.md"  # sentence-transformers' own card: training details, citations
    (tmp / "README.md").write_text(merge_cards(model_card(card), generated.read_text() if generated.exists() else ""))
    (tmp / "distilrag_card.json").write_text(json.dumps(to_dict(card), indent=1, sort_keys=True))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    if make_default:
        set_published("distilled", out, card.corpus)  # per corpus: other corpora keep theirs
        if (run_dir / "ranker").exists():
            set_published("ranker", run_dir / "ranker", card.corpus)
    return out
