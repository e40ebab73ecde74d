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
