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


def test_distill_kl_lower_when_student_agrees_with_teacher():
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss

    teacher = torch.tensor([[3.0, 1.0, -1.0, -2.0]])
    agree = torch.tensor([[0.9, 0.6, 0.3, 0.1]])
    disagree = torch.tensor([[0.1, 0.3, 0.6, 0.9]])
    assert kl(agree, teacher) < kl(disagree, teacher)
    # DistillKLDivLoss computes the same quantity from embeddings (dot products of normalised vectors).
    q = torch.tensor([[1.0, 0.0]])
    docs = [torch.tensor([[math.cos(a), math.sin(a)]]) for a in (0.1, 0.6, 1.2, 1.5)]
    loss = DistillKLDivLoss.__new__(DistillKLDivLoss)
    torch.nn.Module.__init__(loss)
    from sentence_transformers.util import pairwise_dot_score

    loss.similarity_fct = pairwise_dot_score
    loss.student_temperature, loss.teacher_temperature = 0.05, 1.0
    loss.loss_fct = torch.nn.KLDivLoss(reduction="batchmean")
    loss._checked_teacher_scale = True
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
