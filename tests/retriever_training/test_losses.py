"""Losses on tiny batches: ListMLE checked by hand; KL and hybrid lower when student matches teacher."""
import math

import pytest
import torch

from retriever_training.losses import hybrid_point_margin_mse, minmax_per_row


class StubCrossEncoder(torch.nn.Module):
    """Scores a (query, doc) pair as float(doc): the loss's arithmetic is all that is left."""

    device = torch.device("cpu")
    num_labels = 1

    def preprocess(self, pairs, prompt=None, task=None):
        return {"x": torch.tensor([float(d) for _, d in pairs])}

    def forward(self, tokens):
        return {"scores": tokens["x"]}


def test_listmle_value_by_hand():
    from sentence_transformers.cross_encoder.losses import ListMLELoss

    loss = ListMLELoss(StubCrossEncoder())
    # Docs given best-first with logits 2, 1, 0: -log P = -[(2 - lse(2,1,0)) + (1 - lse(1,0)) + 0]
    value = loss([["q"], [["2", "1", "0"]]], [torch.tensor([3.0, 2.0, 1.0])])
    lse = lambda *x: math.log(sum(math.exp(v) for v in x))  # noqa: E731
    by_hand = -((2 - lse(2, 1, 0)) + (1 - lse(1, 0)) + 0.0)
    assert float(value) == pytest.approx(by_hand, rel=1e-5)
    # The order the LLM gave matters: the reversed list is less likely.
    worse = loss([["q"], [["0", "1", "2"]]], [torch.tensor([3.0, 2.0, 1.0])])
    assert float(worse) > float(value)


def kl(student, teacher, ts=0.05, tt=1.0):
    p = torch.softmax(teacher / tt, dim=1)
    return torch.nn.functional.kl_div(torch.log_softmax(student / ts, dim=1), p, reduction="batchmean")


def distill_kl_div_without_model(student_temperature=0.05, teacher_temperature=1.0):
    """sentence-transformers' DistillKLDivLoss with only what compute_loss_from_embeddings reads."""
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
    from sentence_transformers.util import pairwise_dot_score

    loss = DistillKLDivLoss.__new__(DistillKLDivLoss)
    torch.nn.Module.__init__(loss)
    loss.similarity_fct = pairwise_dot_score
    loss.student_temperature, loss.teacher_temperature = student_temperature, teacher_temperature
    loss.loss_fct = torch.nn.KLDivLoss(reduction="batchmean")
    loss._checked_teacher_scale = True
    return loss


def test_distill_kl_lower_when_student_agrees_with_teacher():
    teacher = torch.tensor([[3.0, 1.0, -1.0, -2.0]])
    agree = torch.tensor([[0.9, 0.6, 0.3, 0.1]])
    disagree = torch.tensor([[0.1, 0.3, 0.6, 0.9]])
    assert kl(agree, teacher) < kl(disagree, teacher)
    # DistillKLDivLoss computes the same quantity from embeddings (dot products of normalised vectors).
    q = torch.tensor([[1.0, 0.0]])
    docs = [torch.tensor([[math.cos(a), math.sin(a)]]) for a in (0.1, 0.6, 1.2, 1.5)]
    loss = distill_kl_div_without_model()
    got = loss.compute_loss_from_embeddings([q, *docs], teacher)
    student = torch.tensor([[math.cos(a) for a in (0.1, 0.6, 1.2, 1.5)]])
    assert float(got) == pytest.approx(float(kl(student, teacher)) * 0.05 ** 2, rel=1e-4)


def test_hybrid_loss_zero_at_agreement_and_grows_with_disagreement():
    teacher = torch.tensor([[5.0, 3.0, 1.0]])
    target = minmax_per_row(teacher)  # [1, .5, 0]
    assert torch.allclose(target, torch.tensor([[1.0, 0.5, 0.0]]))
    assert float(hybrid_point_margin_mse(target.clone(), teacher)) == pytest.approx(0.0, abs=1e-7)
    near = hybrid_point_margin_mse(torch.tensor([[0.9, 0.5, 0.1]]), teacher)
    far = hybrid_point_margin_mse(torch.tensor([[0.0, 0.5, 1.0]]), teacher)
    assert 0 < float(near) < float(far)
    # margin term alone ignores a constant shift; point term does not
    shifted = target + 0.3
    assert float(hybrid_point_margin_mse(shifted, teacher, point_weight=0.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(hybrid_point_margin_mse(shifted, teacher, margin_weight=0.0)) == pytest.approx(0.09, rel=1e-4)


def angles_to_vectors(angles):
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles])


def test_listwise_kl_without_in_batch_negatives_equals_distill_kl_div():
    """Second implementation: sentence-transformers' DistillKLDivLoss (scaled by T_s^2) over the same lists."""
    from retriever_training.losses import listwise_kl_in_batch

    queries = angles_to_vectors([0.0, 0.8])
    docs = angles_to_vectors([0.1, 0.6, 1.2, 1.5, 0.9])           # 5 distinct passages
    index = torch.tensor([[0, 1, 2, 3], [4, 1, 3, 0]])              # two lists sharing passages 0, 1, 3
    teacher = torch.tensor([[3.0, 1.0, -1.0, -2.0], [2.0, 0.5, 0.0, -1.0]])
    ours = listwise_kl_in_batch(queries, docs, index, teacher, 0.05, 1.0, in_batch_negatives=False)

    st = distill_kl_div_without_model()
    columns = [docs[index[:, n]] for n in range(index.shape[1])]
    theirs = st.compute_loss_from_embeddings([queries, *columns], teacher) / 0.05 ** 2
    assert float(ours) == pytest.approx(float(theirs), rel=1e-4)


def test_in_batch_negatives_penalise_an_other_querys_passage_close_to_the_query():
    from retriever_training.losses import listwise_kl_in_batch

    queries = angles_to_vectors([0.0, 2.0])
    teacher = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    index = torch.tensor([[0, 1], [2, 3]])
    far_other = angles_to_vectors([0.0, 0.5, 2.0, 2.5])     # query 1's passages far from query 0
    near_other = angles_to_vectors([0.0, 0.5, 0.05, 2.5])   # query 1's best passage sits on query 0
    plain = [listwise_kl_in_batch(queries, d, index, teacher, in_batch_negatives=False) for d in (far_other, near_other)]
    extended = [listwise_kl_in_batch(queries, d, index, teacher) for d in (far_other, near_other)]
    # The in-batch term sees the other list's passage crowding query 0, and is never below plain KL.
    assert float(extended[1]) > float(extended[0]) + 0.1
    assert all(float(e) >= float(p) - 1e-6 for e, p in zip(extended, plain))


class CountingEncoder(torch.nn.Module):
    """Embeds a token row as a fixed function of its ids and counts the rows it was asked to embed."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.rows = 0

    def forward(self, features):
        ids = features["input_ids"].float() * features["attention_mask"]
        self.rows += ids.shape[0]
        emb = torch.stack([ids.sum(1), (ids ** 2).sum(1).sqrt() + 1.0], dim=1) * self.scale
        return {"sentence_embedding": emb}


def tokens(rows, width):
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_loss_encodes_each_distinct_passage_once_and_matches_the_per_slot_computation():
    from retriever_training.losses import ListwiseKLInBatchLoss, listwise_kl_in_batch

    model = CountingEncoder()
    query = tokens([[1], [2], [3]], 1)
    # 3 queries x 3 candidates, columns padded to different widths; only 4 distinct passages
    col1 = tokens([[5, 6], [5, 6], [7]], 2)
    col2 = tokens([[7], [8, 9, 4], [5, 6]], 3)
    col3 = tokens([[8, 9, 4], [7], [8, 9, 4]], 3)
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.5, 0.0, 1.0]])
    loss = ListwiseKLInBatchLoss(model, 0.1, 1.0, in_batch_negatives=False)
    value = loss([query, col1, col2, col3], teacher)
    assert model.rows == 3 + 3  # 3 queries + 3 distinct passages ([5,6], [7], [8,9,4])
    # Same number from embedding every slot separately
    q = model(query)["sentence_embedding"]
    slots = torch.cat([model(c)["sentence_embedding"] for c in (col1, col2, col3)])
    per_slot = listwise_kl_in_batch(q, slots, torch.arange(9).reshape(3, 3).T, teacher, 0.1, 1.0, False)
    assert float(value.detach()) == pytest.approx(float(per_slot.detach()), rel=1e-5)
    value.backward()
    assert model.scale.grad is not None


def test_listwise_kl_is_computed_in_fp32_under_bf16_autocast():
    from retriever_training.losses import listwise_kl_in_batch

    queries, docs = angles_to_vectors([0.0, 0.8]), angles_to_vectors([0.1, 0.6, 1.2, 1.5])
    index, teacher = torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plain = listwise_kl_in_batch(queries, docs, index, teacher)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = listwise_kl_in_batch(queries.bfloat16(), docs.bfloat16(), index, teacher)
    assert autocast.dtype == torch.float32
    assert float(autocast) == pytest.approx(float(plain), rel=0.05)


def test_embed_by_length_chunks_shortest_first_and_returns_rows_in_input_order():
    from retriever_training.losses import embed_by_length

    model = CountingEncoder()
    widths = []
    forward = model.forward
    model.forward = lambda f: (widths.append(tuple(f["input_ids"].shape)), forward(f))[1]
    rows = [[5, 6, 7, 8, 9], [1], [2, 3], [4, 4, 4, 4], [3, 1, 2]]
    feats = tokens(rows, 5)
    whole = forward(feats)["sentence_embedding"]
    chunked = embed_by_length(model, feats, rows_per_forward=2)
    assert torch.allclose(chunked, whole)
    # lengths 1, 2 | 3, 4 | 5: each chunk padded only to its own longest row
    assert widths == [(2, 2), (2, 4), (1, 5)]
    chunked.sum().backward()
    assert model.scale.grad is not None
    widths.clear()
    embed_by_length(model, feats, rows_per_forward=0)
    assert widths == [(5, 5)]
