"""Stage 4 — train_ranker: a cross-encoder learns the LLM's orders (the intermediate ranker).

    distilrag retrain --config ...   (stage "ranker")

In:  rankings.jsonl (LLMRanking), queries (text by qid), the corpus (passage text by docid)
Out: <run>/ranker/ — a sentence-transformers CrossEncoder directory (MiniLM backbone, 1 logit),
     <run>/ranker_metrics.json — agreement with the LLM on held-out labelled queries
     (Kendall tau, top-1 agreement) and, where gold qrels exist, nDCG@10 of LLM, ranker and
     first-stage orders against gold over the same candidates.
Loss: LambdaLoss (default), ListMLE (the seed paper's), ListNet or RankNet from
sentence-transformers' CrossEncoder losses, trained with CrossEncoderTrainer.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rag.corpus import Corpus, passage_text
from rag.records import LLMRanking

RANKER_LOSSES = ("listmle", "listnet", "lambda", "ranknet")
PRECISIONS = ("auto", "bf16", "fp32")
ATTENTIONS = ("auto", "eager", "sdpa")


@dataclass(frozen=True)
class RankerConfig:
    loss: str = "lambda"            # ranked held-out queries better than ListMLE on the shipped labels
    epochs: int = 1                 # without dropout one epoch matches two, in half the time
    min_steps: int = 100            # epochs are added until the ranker takes this many optimizer steps:
                                    # 500 labels x 1 epoch (63 steps) left it worse than the first stage
    batch_size: int = 8
    lr: float = 1e-4   # the fresh 1-logit head needs it: at 3e-5 the ranker stayed near random
    warmup_ratio: float = 0.1
    max_length: int = 256
    heldout_fraction: float = 0.1   # labelled queries neither ranker nor student sees: the ranker's
                                    # agreement with the LLM, and the dev set of a corpus without one
    max_queries: int = 0            # 0 = all labelled queries (the label-efficiency curve uses fewer)
    list_size: int = 8              # first-stage candidates per training list, in the LLM's order
                                    # (0 = teacher.depth): the LLM's top 8 make the ranker a reranker
    pairs_per_forward: int = 4      # pairs per forward pass, length-sorted: small chunks pad little
                                    # on a CPU; raise it on a GPU (-1 = the whole batch at once)
    precision: str = "auto"         # auto: bf16 autocast where the CPU/GPU does bf16 natively
    attention_dropout: float | None = 0.0   # None: the backbone's own (0.1); 0 is 1.3x faster on a CPU (training_speed.py)
    hidden_dropout: float | None = 0.0      # None: the backbone's own (0.1) on embeddings, layer outputs and head
    attention: str = "auto"                 # attention kernel for training: auto = eager on a CPU, SDPA on a GPU
    freeze_word_embeddings: bool = True     # a dense 30k x 384 gradient per chunked forward (training_speed.py)
    freeze_layers: int = 0          # embeddings + this many lower layers frozen: a cheaper backward pass, but
                                    # 3 of 6 on the shipped labels: 1.26x faster, held-out nDCG@10 .856 vs .911
    seed: int = 0

    def __post_init__(self):
        from rag.config import ConfigError, require

        require(self, positive=("epochs", "batch_size", "lr", "max_length"),
                non_negative=("min_steps", "max_queries", "list_size", "freeze_layers"),
                fractions=("warmup_ratio", "heldout_fraction", "attention_dropout", "hidden_dropout"),
                choices={"loss": RANKER_LOSSES, "precision": PRECISIONS, "attention": ATTENTIONS})
        if self.pairs_per_forward == 0 or self.pairs_per_forward < -1:
            raise ConfigError(f"pairs_per_forward must be 1 or more (-1: the whole batch), got {self.pairs_per_forward}")


def is_heldout(qid: str, fraction: float) -> bool:
    """A stable split by qid hash, so resumed and repeated runs hold out the same queries."""
    return int(hashlib.sha1(qid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def split_heldout(rankings: list[LLMRanking], fraction: float) -> tuple[list[LLMRanking], list[LLMRanking]]:
    """(training, held-out) labelled queries: the held-out ones are never trained on (retrain's
    teacher_lists keeps them from the student too)."""
    return ([r for r in rankings if not is_heldout(r.qid, fraction)],
            [r for r in rankings if is_heldout(r.qid, fraction)])


def ranker_epochs(cfg: RankerConfig, n_train: int) -> int:
    """cfg.epochs, raised so that a small label set still gets cfg.min_steps optimizer steps."""
    steps_per_epoch = max(1, -(-n_train // cfg.batch_size))
    return max(cfg.epochs, -(-cfg.min_steps // steps_per_epoch))


def listwise_dataset(rankings: list[LLMRanking], queries: dict[str, str], corpus: Corpus, list_size: int = 0):
    """(query, docs, graded labels) — the layout the listwise losses expect. A list keeps the
    first-stage top `list_size` candidates (0 = all), graded n..1 by the LLM's order among them.
    Documents are stored shortest first with their labels alongside: the losses run the pairs in
    chunks padded to the chunk's longest, so neighbours of similar length waste little compute
    (measured on the shipped labels: 1.38x the real tokens in input order, 0.92x with 8-candidate
    lists sorted and 4 pairs per chunk). Every loss reads the grade from the label, not the position."""
    from datasets import Dataset

    rows = {"query": [], "docs": [], "labels": []}
    for r in rankings:
        kept = set(r.docids_in[:list_size] if list_size else r.docids_in)
        ranked = [d for d in r.ranked_docids if d in kept]
        grade = {d: float(len(ranked) - i) for i, d in enumerate(ranked)}
        texts = {d: passage_text(corpus.by_id[d]) for d in ranked}
        docs = sorted(ranked, key=lambda d: len(texts[d]))
        rows["query"].append(queries[r.qid])
        rows["docs"].append([texts[d] for d in docs])
        rows["labels"].append([grade[d] for d in docs])
    return Dataset.from_dict(rows)


def make_loss(name: str, model, pairs_per_forward: int | None = None):
    from sentence_transformers.cross_encoder import losses

    chunk = {"mini_batch_size": pairs_per_forward}
    if name == "listmle":
        # docs arrive sorted by length, not best-first: ListMLE must take the order from the labels
        return losses.ListMLELoss(model, respect_input_order=False, **chunk)
    if name == "listnet":
        return losses.ListNetLoss(model, **chunk)
    if name == "lambda":
        return losses.LambdaLoss(model, **chunk)
    if name == "ranknet":
        return losses.RankNetLoss(model, **chunk)
    raise ValueError(f"ranker.loss must be one of {RANKER_LOSSES}, not {name!r}")


def train_ranker(cfg: RankerConfig, rankings: list[LLMRanking], queries: dict[str, str], corpus: Corpus,
                 out_dir: Path, list_size: int = 0, base_model: str | None = None):
    """Train and save the cross-encoder on each LLM list's first-stage top `list_size` (0 = all; the
    retrain passes teacher.depth: the ranker learns to order what it will score);
    returns (model, train rankings, held-out rankings)."""
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    from rag.models import base_embedder_path
    from retriever_training.processes import is_main_process, per_process_batch, world_size
    from retriever_training.training_speed import apply_training_settings, freeze_lower_layers, precision_training_args

    train, heldout = split_heldout(rankings, cfg.heldout_fraction)
    if cfg.max_queries:
        train = train[: cfg.max_queries]
    if not train:
        raise ValueError("No labelled queries to train the ranker on: run the labelling stage first.")
    model = CrossEncoder(str(base_model or base_embedder_path()), num_labels=1, max_length=cfg.max_length)
    apply_training_settings(model, cfg)
    freeze_lower_layers(model, cfg.freeze_layers)
    args = CrossEncoderTrainingArguments(
        output_dir=str(out_dir / "checkpoints"), num_train_epochs=ranker_epochs(cfg, len(train)),
        per_device_train_batch_size=per_process_batch(cfg.batch_size, "ranker.batch_size"),
        learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio in Transformers 5
        seed=cfg.seed, save_strategy="no", logging_steps=25, report_to="none",
        dataloader_drop_last=world_size() > 1,  # under DDP: the same number of steps in every process
        # every parameter is used in each step; DDP's search for unused ones marks the parameters of
        # the losses' chunked forwards ready twice and stops the run
        ddp_find_unused_parameters=False,
        **precision_training_args(cfg.precision))
    trainer = CrossEncoderTrainer(model=model, args=args,
                                  train_dataset=listwise_dataset(train, queries, corpus, list_size),
                                  loss=make_loss(cfg.loss, model, cfg.pairs_per_forward))
    trainer.train()
    if is_main_process():
        model.save_pretrained(str(out_dir))
    return model, train, heldout


def ranker_orders(model, rankings: list[LLMRanking], queries: dict[str, str], corpus: Corpus,
                  batch_size: int = 32) -> dict[str, list[str]]:
    """The ranker's order of each ranking's input docids."""
    from retriever_training.training_speed import inference_attention

    pairs, index = [], []
    for r in rankings:
        for d in r.docids_in:
            pairs.append((queries[r.qid], passage_text(corpus.by_id[d])))
            index.append((r.qid, d))
    with inference_attention(model):
        scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False) if pairs else []
    by_q: dict[str, list[tuple[str, float]]] = {}
    for (qid, d), s in zip(index, scores):
        by_q.setdefault(qid, []).append((d, float(s)))
    return {q: [d for d, _ in sorted(v, key=lambda x: -x[1])] for q, v in by_q.items()}


def agreement(model, heldout: list[LLMRanking], queries: dict[str, str], corpus: Corpus,
              qrels: dict | None = None) -> dict:
    """How well the ranker reproduces the LLM on held-out queries, and how both fare against gold."""
    from rag.metrics import kendall_tau, order_metric

    if not heldout:
        return {"heldout_queries": 0}
    orders = ranker_orders(model, heldout, queries, corpus)
    n = len(heldout)
    out = {"heldout_queries": n}
    # The first-stage order is the bar: a ranker that matches the LLM's top choice less often than
    # the order it started from has not learned the LLM (see ranker_learned).
    for name, get in (("", lambda r: orders[r.qid]), ("first_stage_", lambda r: r.docids_in)):
        out[f"{name}kendall_tau_vs_llm"] = sum(kendall_tau(get(r), r.ranked_docids) for r in heldout) / n
        out[f"{name}top1_agreement_vs_llm"] = sum(get(r)[0] == r.ranked_docids[0] for r in heldout) / n
    if qrels:
        judged = [r for r in heldout if r.qid in qrels]
        if judged:
            for name, get in (("llm", lambda r: r.ranked_docids), ("ranker", lambda r: orders[r.qid]),
                              ("first_stage", lambda r: r.docids_in)):
                out[f"{name}_ndcg@10_vs_gold"] = sum(order_metric(get(r), qrels[r.qid], "ndcg@10")
                                                     for r in judged) / len(judged)
    return out


TOP1_TOLERANCE = 0.05  # ~ one standard error of a top-1 rate on 100 held-out queries


def ranker_learned(metrics: dict) -> str | None:
    """None when the ranker picks the LLM's top passage at least about as often as the first-stage
    order does; otherwise why not, and what to do. Top-1, not Kendall tau: the LLM's order of the
    weak candidates is noise that a good ranker does not reproduce (the shipped labels: tau .34 for
    a ranker at held-out nDCG@10 .891 vs .38 for the first stage; top-1 .78 vs .74)."""
    if not metrics.get("heldout_queries") or "first_stage_top1_agreement_vs_llm" not in metrics:
        return None
    ranker, first = metrics["top1_agreement_vs_llm"], metrics["first_stage_top1_agreement_vs_llm"]
    if ranker + TOP1_TOLERANCE >= first:
        return None
    return (f"the ranker picks the LLM's top passage for {ranker:.0%} of {metrics['heldout_queries']} held-out "
            f"queries, the first-stage order for {first:.0%}: it has not learned the LLM's ranking. Give it "
            f"more optimizer steps (--ranker.epochs / --ranker.min_steps), a higher --ranker.lr, or more "
            f"labelled queries (the retrain goes on: the verdict on the student decides).")


def check_ranker(metrics: dict) -> str | None:
    """Warn (one line) when the ranker picks the LLM's top passage less often than the first stage.
    Never a stop: a top-1 rate over a few dozen held-out queries is noisy (on one corpus it stopped a
    retrain whose student was +.063 nDCG@10 on thousands of gold-judged questions); the verdict on
    the student (verdict.py) is what decides publishing."""
    why = ranker_learned(metrics)
    if why:
        print(f"warning: {why}", flush=True)
    return why
