"""Stage 6 — distill_retriever: the bi-encoder student learns the ranker's score distributions.

    distilrag retrain --config ...   (stage "distill")

In:  <run>/teacher_scores.jsonl.gz (TeacherScores), query texts, the corpus; the dev split
Out: <run>/student/ — the best checkpoint by dev nDCG@10 (a sentence-transformers directory),
     <run>/distill_metrics.json — base and per-epoch dev metrics
Loss: KL divergence between softmax(teacher / T_t) and softmax(student cosine / T_s) over each
query's candidate list (sentence-transformers' DistillKLDivLoss; default), or DisRanker's hybrid
point-MSE + margin-MSE (losses.py). Dev evaluation uses rag.metrics, the same implementation
as the harness and the app, over retrieval from the whole corpus.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from rag.corpus import Corpus, passage_text
from rag.records import Query, TeacherScores

DISTILL_LOSSES = ("kl", "hybrid")


@dataclass(frozen=True)
class DistillConfig:
    loss: str = "kl"
    docs_per_query: int = 8          # candidates per training example (first-stage order, teacher-scored)
    student_temperature: float = 0.05  # cosines live in [-1, 1]: a low temperature gives them a usable softmax
    teacher_temperature: float = 1.0
    epochs: int = 2
    batch_size: int = 16
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    max_seq_length: int = 192
    dev_queries: int = 400           # seeded subset of the dev split for per-epoch model selection
    seed: int = 0


def training_dataset(scores: list[TeacherScores], queries: dict[str, str], corpus: Corpus, n_docs: int):
    """Columns query, doc_1..doc_N and label (N teacher scores) as DistillKLDivLoss expects."""
    from datasets import Dataset

    rows: dict[str, list] = {"query": [], **{f"doc_{i}": [] for i in range(1, n_docs + 1)}, "label": []}
    for ts in scores:
        if len(ts.docids) < n_docs:
            continue  # a short list would break the fixed column layout; rare (tiny corpora)
        rows["query"].append(queries[ts.qid])
        for i, d in enumerate(ts.docids[:n_docs], 1):
            rows[f"doc_{i}"].append(passage_text(corpus.by_id[d]))
        rows["label"].append([float(s) for s in ts.scores[:n_docs]])
    if not rows["query"]:
        raise ValueError(f"No teacher-scored query has {n_docs} candidates: lower distill.docs_per_query.")
    return Dataset.from_dict(rows)


def dev_evaluator(corpus: Corpus, queries: list[Query], qrels: dict, name: str = "dev", depth: int = 20):
    """Retrieval over the whole corpus for dev queries, scored by rag.metrics (primary: nDCG@10),
    behind sentence-transformers' evaluator contract so the trainer keeps the best epoch."""
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

    class DevRetrievalEvaluator(BaseEvaluator):
        def __init__(self):
            super().__init__()
            self.name = name
            self.primary_metric = f"{name}_ndcg@10"
            self.history: list[dict] = []

        def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
            metrics = dev_metrics(model, corpus, queries, qrels, depth)
            self.history.append({"epoch": epoch, "steps": steps, **metrics})
            return {f"{name}_{k}": v for k, v in metrics.items()}

    return DevRetrievalEvaluator()


def dev_metrics(model, corpus: Corpus, queries: list[Query], qrels: dict, depth: int = 20) -> dict:
    import numpy as np

    from rag.metrics import evaluate

    docs = model.encode([passage_text(p) for p in corpus.passages], batch_size=64,
                        normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    qv = model.encode([q.query for q in queries], batch_size=64, normalize_embeddings=True,
                      convert_to_numpy=True, show_progress_bar=False)
    sims = qv @ docs.T
    top = np.argsort(-sims, axis=1)[:, :depth]
    run = {q.qid: {corpus.passages[j].docid: float(sims[i, j]) for j in top[i]} for i, q in enumerate(queries)}
    return evaluate(run, qrels, qids=[q.qid for q in queries])


def make_loss(cfg: DistillConfig, model):
    if cfg.loss == "kl":
        from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss

        return DistillKLDivLoss(model, student_temperature=cfg.student_temperature,
                                teacher_temperature=cfg.teacher_temperature)
    if cfg.loss == "hybrid":
        from retriever_training.losses import HybridPointMarginMSELoss

        return HybridPointMarginMSELoss(model)
    raise ValueError(f"distill.loss must be one of {DISTILL_LOSSES}, not {cfg.loss!r}")


def dev_subset(dev: list[Query], n: int, seed: int) -> list[Query]:
    return random.Random(seed).sample(dev, min(n, len(dev))) if n else dev


def distill(cfg: DistillConfig, scores: list[TeacherScores], queries: dict[str, str], corpus: Corpus,
            dev: list[Query], qrels: dict, out_dir: Path, base_model: str | None = None) -> dict:
    """Train the student, keep the best epoch by dev nDCG@10, save it to out_dir; returns metrics."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from rag.models import base_embedder_path

    model = SentenceTransformer(str(base_model or base_embedder_path()))  # cuda when present, else cpu
    model.max_seq_length = cfg.max_seq_length
    evaluator = dev_evaluator(corpus, dev, qrels)
    base = evaluator(model, epoch=0)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir.parent / "student_checkpoints"), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio,
        seed=cfg.seed, eval_strategy="epoch", save_strategy="epoch", save_total_limit=cfg.epochs + 1,
        load_best_model_at_end=True, metric_for_best_model="eval_dev_ndcg@10", greater_is_better=True,
        logging_steps=25, report_to="none")
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=training_dataset(scores, queries, corpus, cfg.docs_per_query),
        loss=make_loss(cfg, model), evaluator=evaluator)
    trainer.train()
    model.save_pretrained(str(out_dir))
    best = max(evaluator.history[1:], key=lambda h: h["ndcg@10"]) if len(evaluator.history) > 1 else base
    return {"base_dev": {k.removeprefix("dev_"): v for k, v in base.items()},
            "best_dev": {k: v for k, v in best.items() if k not in ("epoch", "steps")},
            "best_epoch": best.get("epoch"), "history": evaluator.history,
            "dev_queries": len(dev), "train_examples": len(scores)}
