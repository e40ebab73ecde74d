from rag.corpus import Corpus
from rag.records import Passage, Query
from retriever_training.distill import DistillConfig, base_dev_metrics


class CountingEvaluator:
    name = "dev"

    def __init__(self, ndcg: float):
        self.ndcg, self.calls, self.history = ndcg, 0, []

    def __call__(self, model, epoch: int = -1, steps: int = -1):
        self.calls += 1
        self.history.append({"epoch": epoch, "steps": steps, "ndcg@10": self.ndcg})
        return {"dev_ndcg@10": self.ndcg}


def test_base_dev_metrics_cached_per_model_corpus_and_length(tmp_path):
    model_dir = tmp_path / "base"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights-1")
    corpus = Corpus("toy", [Passage("a", "alpha"), Passage("b", "beta")])
    dev = [Query("q1", "alpha?"), Query("q2", "beta?")]
    cfg = DistillConfig(max_seq_length=128)

    first = CountingEvaluator(0.5)
    assert base_dev_metrics(first, None, str(model_dir), corpus, dev, cfg, False) == {"dev_ndcg@10": 0.5}
    again = CountingEvaluator(0.9)  # would give another figure if it ran
    assert base_dev_metrics(again, None, str(model_dir), corpus, dev, cfg, False) == {"dev_ndcg@10": 0.5}
    assert again.calls == 0 and again.history == first.history  # the trainer's history looks the same

    for changed in [dict(cfg=DistillConfig(max_seq_length=256)), dict(dev=dev[:1]),
                    dict(corpus=Corpus("toy", [Passage("a", "alpha"), Passage("b", "gamma")]))]:
        ev = CountingEvaluator(0.7)
        args = dict(corpus=corpus, dev=dev, cfg=cfg) | changed
        assert base_dev_metrics(ev, None, str(model_dir), args["corpus"], args["dev"], args["cfg"], False)["dev_ndcg@10"] == 0.7
        assert ev.calls == 1
    (model_dir / "model.safetensors").write_bytes(b"weights-2, retrained in place")  # no cache to clear
    ev = CountingEvaluator(0.6)
    assert base_dev_metrics(ev, None, str(model_dir), corpus, dev, cfg, False)["dev_ndcg@10"] == 0.6


class CountingEncoder:
    """A bi-encoder stand-in: one weight, vectors that depend on it, and a count of encode calls."""

    def __init__(self, weight: float):
        import torch

        self.weight, self.max_seq_length, self.device = torch.tensor([weight]), 128, torch.device("cpu")
        self.passage_calls = 0

    def state_dict(self):
        return {"w": self.weight}

    def encode(self, texts, **kwargs):
        import numpy as np

        if texts and not texts[0].endswith("?"):
            self.passage_calls += 1
        v = np.array([[len(t) * float(self.weight), 1.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_corpus_encoded_once_per_weights_corpus_and_length():
    from retriever_training.distill import retrieval_run

    corpus = Corpus("toy", [Passage("a", "alpha"), Passage("b", "beta gamma delta")])
    dev, test = [Query("q1", "alpha?")], [Query("q2", "beta?"), Query("q3", "gamma?")]
    model = CountingEncoder(1.0)
    first = retrieval_run(model, corpus, dev, depth=2)
    assert retrieval_run(model, corpus, test, depth=2).keys() == {"q2", "q3"}  # other queries, same passages
    assert model.passage_calls == 1
    same_weights = CountingEncoder(1.0)  # e.g. the published checkpoint reloaded from disk
    assert retrieval_run(same_weights, corpus, dev, depth=2) == first and same_weights.passage_calls == 0

    model.weight[0] = 2.0   # a training step changed the weights
    retrieval_run(model, corpus, dev, depth=2)
    model.max_seq_length = 256
    retrieval_run(model, corpus, dev, depth=2)
    retrieval_run(model, Corpus("toy", [Passage("a", "alpha")]), dev, depth=1)
    assert model.passage_calls == 4


def test_weights_digest_survives_save_and_reload(tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.models import base_embedder_path
    from retriever_training.distill import weights_digest

    model = SentenceTransformer(str(base_embedder_path()), device="cpu")
    model.save_pretrained(str(tmp_path / "m"))
    assert weights_digest(SentenceTransformer(str(tmp_path / "m"), device="cpu")) == weights_digest(model)
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3
    assert weights_digest(model) != weights_digest(SentenceTransformer(str(tmp_path / "m"), device="cpu"))
