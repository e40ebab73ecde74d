"""Stage 6 — distill_retriever: the bi-encoder student learns the ranker's score distributions.

    distilrag retrain --config ...   (stage "distill")

In:  <run>/teacher_scores.jsonl.gz (TeacherScores), query texts, the corpus; the dev split
Out: <run>/student/ — the best checkpoint by dev nDCG@10 (a sentence-transformers directory),
     <run>/distill_metrics.json — base and per-epoch dev metrics
Loss: KL divergence between softmax(teacher / T_t) over each query's candidate list and
softmax(student cosine / T_s) over that list plus the batch's other passages as in-batch negatives
(losses.ListwiseKLInBatchLoss; default; `in_batch_negatives: false` gives plain listwise KL), or
DisRanker's hybrid point-MSE + margin-MSE. Batches group queries whose top candidate comes from the
same document, so they share candidates (each distinct passage is encoded once) and the in-batch
negatives are hard. Dev evaluation uses rag.metrics, the same implementation as the harness and
the app, over retrieval from the whole corpus.
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
    in_batch_negatives: bool = True  # kl only: the other queries' candidates join each softmax
    group_by_document: bool = True   # batch queries whose top candidate shares a document
    docs_per_query: int = 4          # candidates per training example (first-stage order, teacher-scored):
                                     # 8 cost 1.6x the student time for +.002 test nDCG@10
    student_temperature: float = 0.05  # cosines live in [-1, 1]: a low temperature gives them a usable softmax
    teacher_temperature: float = 1.0
    epochs: int = 1                  # a second epoch: +.001 test nDCG@10 for twice the time
    batch_size: int = 32             # queries per step; 32 shares more passages per batch than 16 (1.7x faster epochs)
    lr: float = 4e-5
    warmup_ratio: float = 0.1
    max_seq_length: int = 512        # whole passages: at 256, 8.5% of the shipped corpus's are cut
    rows_per_forward: int = 8        # kl: distinct passages per forward, shortest first (0 = one padded forward)
    dev_queries: int = 400           # seeded subset of the dev split (else of the held-out labelled
                                     # queries) for per-epoch model selection
    precision: str = "auto"          # auto: bf16 autocast where the CPU/GPU does bf16 natively
    attention_dropout: float | None = 0.0  # off: 1.6x faster CPU steps, same test nDCG (training_speed.py)
    hidden_dropout: float | None = 0.0     # None: the backbone's own (0.1) on embeddings and layer outputs
    attention: str = "auto"                # attention kernel for training: auto = eager on a CPU, SDPA on a GPU
    freeze_word_embeddings: bool = True    # a dense 30k x 384 gradient per chunked forward (training_speed.py)
    seed: int = 0

    def __post_init__(self):
        from rag.config import require

        require(self, positive=("docs_per_query", "student_temperature", "teacher_temperature", "epochs",
                                "batch_size", "lr", "max_seq_length"),
                non_negative=("rows_per_forward", "dev_queries"),
                fractions=("warmup_ratio", "attention_dropout", "hidden_dropout"),
                choices={"loss": DISTILL_LOSSES, "precision": ("auto", "bf16", "fp32"),
                         "attention": ("auto", "eager", "sdpa")})


def training_dataset(scores: list[TeacherScores], queries: dict[str, str], corpus: Corpus, n_docs: int):
    """Columns query, doc_1..doc_N and label (N teacher scores), plus each row's document group
    (the source of its first candidate) for the batch sampler."""
    from datasets import Dataset

    rows: dict[str, list] = {"query": [], **{f"doc_{i}": [] for i in range(1, n_docs + 1)}, "label": []}
    groups: list[str] = []
    for ts in scores:
        if len(ts.docids) < n_docs:
            continue  # a short list would break the fixed column layout; rare (tiny corpora)
        top = corpus.by_id[ts.docids[0]]
        groups.append(top.source or top.title or top.docid)
        rows["query"].append(queries[ts.qid])
        for i, d in enumerate(ts.docids[:n_docs], 1):
            rows[f"doc_{i}"].append(passage_text(corpus.by_id[d]))
        rows["label"].append([float(s) for s in ts.scores[:n_docs]])
    if not rows["query"]:
        raise ValueError(f"No teacher-scored query has {n_docs} candidates: lower distill.docs_per_query.")
    return Dataset.from_dict(rows), groups


class DocumentBatchSampler:
    """A sentence-transformers batch-sampler factory (a class, so the training arguments that hold
    it can be pickled with each checkpoint): queries of one document group are batched together
    (shuffled within the group), batch order shuffled, reshuffled every epoch."""

    def __init__(self, groups: list[str]):
        self.groups = groups

    def __call__(self, dataset, **kwargs):
        from sentence_transformers.base.sampler import DefaultBatchSampler

        groups = self.groups

        class DocumentGroupedBatchSampler(DefaultBatchSampler):
            def __iter__(self):
                rng = random.Random(f"{self.seed}-{self.epoch}")
                by_group: dict[str, list[int]] = {}
                for i, g in enumerate(groups):
                    by_group.setdefault(g, []).append(i)
                stream: list[int] = []
                for g in sorted(by_group):
                    members = by_group[g]
                    rng.shuffle(members)
                    stream.extend(members)
                batches = [stream[i:i + self.batch_size] for i in range(0, len(stream), self.batch_size)]
                if self.drop_last and batches and len(batches[-1]) < self.batch_size:
                    batches.pop()
                rng.shuffle(batches)
                yield from batches

            def __len__(self) -> int:
                n, rest = divmod(len(groups), self.batch_size)
                return n + (1 if rest and not self.drop_last else 0)

        return DocumentGroupedBatchSampler(dataset, **kwargs)


def dev_evaluator(corpus: Corpus, queries: list[Query], qrels: dict, name: str = "dev", depth: int = 20,
                  bf16: bool = False):
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
            metrics = dev_metrics(model, corpus, queries, qrels, depth, bf16)
            self.history.append({"epoch": epoch, "steps": steps, **metrics})
            return {f"{name}_{k}": v for k, v in metrics.items()}

    return DevRetrievalEvaluator()


def dev_metrics(model, corpus: Corpus, queries: list[Query], qrels: dict, depth: int = 20,
                bf16: bool = False) -> dict:
    from rag.metrics import evaluate

    return evaluate(retrieval_run(model, corpus, queries, depth, bf16), qrels, qids=[q.qid for q in queries])


def weights_digest(model) -> str:
    """sha256 of a model's parameters in memory (names, dtypes and values): the same weights give the
    same digest whether they are the trainer's live model or the checkpoint it saved and reloaded."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())  # bf16 has no numpy dtype
    return h.hexdigest()


# The last corpus encoding, by (weights, corpus, length, precision). The retrain encodes the corpus
# with the final student twice — for the dev metrics that select it and for the held-out report —
# and one encoding is ~35 s of a 19-min retrain on 2 cores (2,067 passages at 512 tokens; held-out
# report 62 s -> 12 s).
_last_corpus_encoding: dict[tuple, object] = {}


def encode(model, texts: list[str], batch_size: int, bf16: bool):
    """Unit-length embeddings under the evaluation precision and attention kernel."""
    import torch

    from retriever_training.training_speed import inference_attention

    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16), inference_attention(model):
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)


def corpus_embeddings(model, corpus: Corpus, bf16: bool):
    key = (weights_digest(model), corpus.hash, model.max_seq_length, bf16)
    if key not in _last_corpus_encoding:
        # batches of 16: 384 passages at 512 tokens took 6.5 s in 16s, 8.6 s in 64s (bf16, 2 cores)
        docs = encode(model, [passage_text(p) for p in corpus.passages], 16, bf16)
        _last_corpus_encoding.clear()
        _last_corpus_encoding[key] = docs
    return _last_corpus_encoding[key]


def retrieval_run(model, corpus: Corpus, queries: list[Query], depth: int = 20, bf16: bool = False) -> dict:
    """qid -> {docid: cosine} for the top `depth` passages of the whole corpus."""
    import numpy as np

    docs = corpus_embeddings(model, corpus, bf16)
    qv = encode(model, [q.query for q in queries], 64, bf16)
    sims = qv @ docs.T
    top = np.argsort(-sims, axis=1)[:, :depth]
    return {q.qid: {corpus.passages[j].docid: float(sims[i, j]) for j in top[i]} for i, q in enumerate(queries)}


def make_loss(cfg: DistillConfig, model):
    if cfg.loss == "kl":
        from retriever_training.losses import ListwiseKLInBatchLoss

        return ListwiseKLInBatchLoss(model, cfg.student_temperature, cfg.teacher_temperature,
                                     cfg.in_batch_negatives, cfg.rows_per_forward)
    if cfg.loss == "hybrid":
        from retriever_training.losses import HybridPointMarginMSELoss

        return HybridPointMarginMSELoss(model)
    raise ValueError(f"distill.loss must be one of {DISTILL_LOSSES}, not {cfg.loss!r}")


def base_cache_path(kind: str, model_path: str, corpus: Corpus, queries: list[Query], *params) -> Path:
    """Where a base model's evaluation over `queries` is cached: keyed by its weights, the corpus, the
    query ids and the encoding parameters, so every retrain and sweep point on one corpus shares it."""
    import hashlib
    import json

    from rag.embedder import weights_hash
    from rag.settings import home

    key = hashlib.sha256(json.dumps([weights_hash(Path(model_path)), corpus.hash, sorted(q.qid for q in queries),
                                     *params]).encode()).hexdigest()[:16]
    return home() / kind / f"{key}.json"


def base_dev_metrics(evaluator, model, model_path: str, corpus: Corpus, dev: list[Query], cfg: DistillConfig,
                     bf16: bool, qrels: dict | None = None) -> dict:
    """The base model's dev metrics (the evaluator's first history entry), cached by model weights,
    corpus, dev queries, sequence length and precision: every retrain and sweep point on one corpus
    shares them, and each costs a full corpus encoding (~1.5 min at 256 tokens on 2 CPU cores)."""
    import json

    from rag.records import write_json

    # keyed by the dev qrels too: held-out labelled queries are judged by the LLM's order, which
    # differs between label sets of the same queries
    judged = sorted((q.qid, sorted((qrels or {}).get(q.qid, {}).items())) for q in dev)
    path = base_cache_path("base_dev_metrics", model_path, corpus, dev, cfg.max_seq_length, bf16, judged)
    if path.exists():
        base = json.loads(path.read_text())
        evaluator.history.append({"epoch": 0, "steps": -1, **{k.removeprefix(f"{evaluator.name}_"): v
                                                                for k, v in base.items()}})
        return base
    base = evaluator(model, epoch=0)
    write_json(path, base)
    return base


def dev_subset(dev: list[Query], n: int, seed: int) -> list[Query]:
    return random.Random(seed).sample(dev, min(n, len(dev))) if n else dev


def distill(cfg: DistillConfig, scores: list[TeacherScores], queries: dict[str, str], corpus: Corpus,
            dev: list[Query], qrels: dict, out_dir: Path, base_model: str | None = None) -> dict:
    """Train the student, keep the best epoch by dev nDCG@10, save it to out_dir; returns metrics."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from rag.models import base_embedder_path
    from rag.settings import use_bf16
    from retriever_training.processes import is_main_process, per_process_batch, world_size
    from retriever_training.training_speed import apply_training_settings, precision_training_args

    model = SentenceTransformer(str(base_model or base_embedder_path()))  # cuda when present, else cpu
    model.max_seq_length = cfg.max_seq_length
    apply_training_settings(model, cfg)
    dataset, groups = training_dataset(scores, queries, corpus, cfg.docs_per_query)
    bf16 = use_bf16(cfg.precision)
    evaluator = dev_evaluator(corpus, dev, qrels, bf16=bf16)
    base = base_dev_metrics(evaluator, model, str(base_model or base_embedder_path()), corpus, dev, cfg, bf16, qrels)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir.parent / "student_checkpoints"), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=per_process_batch(cfg.batch_size, "distill.batch_size"),
        # under DDP every process must take the same number of steps (whole rounds of batches)
        dataloader_drop_last=world_size() > 1,
        learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio, seed=cfg.seed, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=cfg.epochs + 1,
        load_best_model_at_end=True, metric_for_best_model="eval_dev_ndcg@10", greater_is_better=True,
        logging_steps=25, report_to="none", **precision_training_args(cfg.precision),
        batch_sampler=DocumentBatchSampler(groups) if cfg.group_by_document else "batch_sampler")
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=make_loss(cfg, model), evaluator=evaluator)
    trained = trainer.train()
    if is_main_process():
        model.save_pretrained(str(out_dir))
    best = max(evaluator.history[1:], key=lambda h: h["ndcg@10"]) if len(evaluator.history) > 1 else base
    return {"base_dev": {k.removeprefix("dev_"): v for k, v in base.items()},
            "best_dev": {k: v for k, v in best.items() if k not in ("epoch", "steps")},
            "best_epoch": best.get("epoch"), "history": evaluator.history,
            "dev_queries": len(dev), "train_examples": len(scores),
            "train_loss": round(float(trained.training_loss), 6), "processes": world_size()}
