"""Training on several processes (torchrun DDP over gloo on this CPU): the gathered in-batch loss
equals the single-process loss over the union of the batches, and a real student trained on 2
processes loads and learns like one trained in a single process."""
import json

import pytest
import torch

from retriever_training.losses import gather_passages, listwise_kl_in_batch

B, DIM = 3, 8


def _problem():
    g = torch.Generator().manual_seed(0)
    queries = torch.randn(2 * B, DIM, generator=g)
    docs = [torch.randn(3, DIM, generator=g), torch.randn(5, DIM, generator=g)]  # unequal: padding is exercised
    docs[1][0] = docs[0][1]  # one passage in both processes' batches
    index = [torch.randint(0, 3, (B, 2), generator=g), torch.randint(0, 5, (B, 2), generator=g)]
    teacher = torch.randn(2 * B, 2, generator=g)
    keys = [torch.tensor([[10, 1], [11, 1], [12, 1]]), torch.tensor([[11, 1], [20, 1], [21, 1], [22, 1], [23, 1]])]
    return queries, docs, index, teacher, keys


def _worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    queries, docs, index, teacher, keys = _problem()
    q = queries[rank * B:(rank + 1) * B].clone().requires_grad_()
    d = docs[rank].clone().requires_grad_()
    everyone, idx = gather_passages(d, index[rank], keys[rank])
    loss = listwise_kl_in_batch(q, everyone, idx, teacher[rank * B:(rank + 1) * B])
    loss.backward()
    torch.save({"loss": loss.item(), "q": q.grad, "d": d.grad, "n": everyone.shape[0]}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_one_process_over_both_batches(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in (0, 1)]

    queries, docs, index, teacher, _ = _problem()
    # One process over both batches: the shared passage once (rank 1's first row is rank 0's second).
    q = queries.clone().requires_grad_()
    d = torch.cat([docs[0], docs[1][1:]]).clone().requires_grad_()
    index1 = torch.where(index[1] == 0, torch.tensor(1), index[1] + 2)
    loss = listwise_kl_in_batch(q, d, torch.cat([index[0], index1]), teacher)
    loss.backward()
    assert all(r["n"] == 7 for r in ranks)  # every distinct passage of both processes, no padding row
    # The mean of the processes' losses is the one-process loss; DDP divides summed gradients by 2.
    assert abs((ranks[0]["loss"] + ranks[1]["loss"]) / 2 - loss.item()) < 1e-6
    for r in (0, 1):
        assert torch.allclose(ranks[r]["q"] / 2, q.grad[r * B:(r + 1) * B], atol=1e-6)
    assert torch.allclose(ranks[0]["d"] / 2, d.grad[:3], atol=1e-6)  # the other process's queries reach it
    assert torch.allclose(ranks[1]["d"][1:] / 2, d.grad[3:], atol=1e-6)
    assert torch.count_nonzero(ranks[1]["d"][0]) == 0  # the second copy is not a negative of its own query


def test_outside_ddp_gather_is_the_identity():
    docs, index = torch.randn(4, DIM), torch.tensor([[0, 3]])
    same, idx = gather_passages(docs, index, torch.zeros(4, 2, dtype=torch.long))
    assert same is docs and idx is index


def _tiny_student_inputs(out_dir):
    from rag.corpus import Corpus, load_corpus, load_qrels, load_queries
    from rag.records import Query, TeacherScores
    from retriever_training.distill import DistillConfig

    full = load_corpus("squad_dev")
    passages = [p for p in full.passages if p.source == full.passages[0].source][:12]
    corpus = Corpus("tiny", passages)
    ids = {p.docid for p in passages}
    gold = {q: next(iter(docs)) for q, docs in load_qrels("squad_dev").items()}  # one passage a question
    asked = [q for q in load_queries("squad_dev") if gold.get(q.qid) in ids][:20]
    train, dev = asked[:16], asked[16:]
    others = [p.docid for p in passages]
    scores = [TeacherScores(q.qid, [gold[q.qid]] + [d for d in others if d != gold[q.qid]][:2], [3.0, 0.5, 0.1], "test")
              for q in train]
    cfg = DistillConfig(epochs=1, batch_size=4, docs_per_query=3, max_seq_length=96, dev_queries=4,
                        group_by_document=True)
    queries = {q.qid: q.query for q in asked}
    dev_q = [Query(q.qid, q.query) for q in dev]
    return (cfg, scores, queries, corpus, dev_q, {q.qid: {gold[q.qid]: 1} for q in dev}, out_dir)


def test_a_student_trains_on_two_processes_and_loads(tmp_path):
    from sentence_transformers import SentenceTransformer

    from retriever_training.ddp import run_stage
    from retriever_training.distill import distill

    two = run_stage("distill", _tiny_student_inputs(tmp_path / "two" / "student"), tmp_path / "two", 2)
    one = distill(*_tiny_student_inputs(tmp_path / "one" / "student"))
    assert two["processes"] == 2 and one["processes"] == 1
    # 16 queries, a global batch of 4: 4 steps in one process, 4 rounds of 2 x 2 queries in two.
    assert one["train_examples"] == two["train_examples"] == 16
    assert abs(two["train_loss"] - one["train_loss"]) <= 0.25 * one["train_loss"], (one, two)
    assert {"ndcg@10"} <= two["best_dev"].keys()
    emb = SentenceTransformer(str(tmp_path / "two" / "student"), device="cpu").encode(["a question"])
    assert emb.shape == (1, 384)
    assert not (tmp_path / "two" / "ddp" / "distill.out.pkl").exists()  # read back and cleared
    json.dumps(two)  # what retrain.py writes to distill_metrics.json


def test_batch_sizes_must_split_over_the_processes():
    from rag.config import ConfigError, load_sections
    from retriever_training.recipe import SECTIONS, check_config

    cfgs = load_sections(None, SECTIONS, ["label.corpus=squad_dev", "run.nproc=3"])
    with pytest.raises(ConfigError, match=r"ranker.batch_size \(8\) does not split over run.nproc=3"):
        check_config(cfgs)
    check_config(load_sections(None, SECTIONS, ["label.corpus=squad_dev", "run.nproc=2"]))


def test_passage_keys_ignore_padding_and_tell_passages_apart():
    from retriever_training.losses import passage_keys

    a = passage_keys(torch.tensor([[101, 7, 8, 102, 0, 0], [101, 8, 7, 102, 0, 0]]))
    b = passage_keys(torch.tensor([[101, 7, 8, 102]]))  # the first row, padded less in another process
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], a[1])


def test_the_ranker_trains_on_two_processes_and_loads(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    from rag.records import LLMRanking
    from retriever_training.ddp import run_stage
    from retriever_training.train_ranker import RankerConfig

    cfg, scores, queries, corpus, *_ = _tiny_student_inputs(tmp_path / "unused")
    rankings = [LLMRanking(s.qid, s.docids, s.docids, "test", "test", "query_likelihood") for s in scores]
    rcfg = RankerConfig(epochs=1, min_steps=0, batch_size=4, list_size=3, heldout_fraction=0.2, max_length=96)
    model, train, held = run_stage("ranker", (rcfg, rankings, queries, corpus, tmp_path / "ranker", 3), tmp_path, 2)
    assert model is None and len(train) + len(held) == 16 and held  # the split is the one-process split
    ranker = CrossEncoder(str(tmp_path / "ranker"), device="cpu")
    s = ranker.predict([(queries[scores[0].qid], corpus.by_id[scores[0].docids[0]].text)])
    assert s.shape == (1,)
