"""Distillation losses for the bi-encoder student that sentence-transformers does not ship.

KL divergence over the candidate list is sentence-transformers' own `DistillKLDivLoss`
(used as is by distill.py); this module adds DisRanker's hybrid loss.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn


class HybridPointMarginMSELoss(nn.Module):
    """Point-wise MSE on scores plus Margin-MSE on score differences (DisRanker, Ye et al. 2024,
    arXiv 2411.04539; Margin-MSE: Hofstätter et al. 2020, arXiv 2010.02666).

    Student score s_i = cos(q, d_i). Teacher scores are min-max scaled per query to [0, 1] so that
    the point-wise term compares like with like; the margin term compares s_i - s_j with
    t_i - t_j over every pair in the list, which is what ranking needs.

    Args:
        model: the SentenceTransformer student.
        point_weight: weight of the point-wise MSE term.
        margin_weight: weight of the Margin-MSE term.

    Inputs:
        +---------------------------------------------+-----------------------------------+
        | Texts                                       | Labels                            |
        +=============================================+===================================+
        | (query, doc_1, ..., doc_N), N >= 2          | teacher scores, shape (batch, N)  |
        +---------------------------------------------+-----------------------------------+
    """

    def __init__(self, model, point_weight: float = 1.0, margin_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.point_weight = point_weight
        self.margin_weight = margin_weight

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = [self.model(f)["sentence_embedding"] for f in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        q = nn.functional.normalize(embeddings[0], dim=-1)
        docs = torch.stack([nn.functional.normalize(e, dim=-1) for e in embeddings[1:]], dim=1)
        student = torch.einsum("bd,bnd->bn", q, docs)
        return hybrid_point_margin_mse(student, labels.to(student.dtype), self.point_weight, self.margin_weight)

    def get_config_dict(self) -> dict:
        return {"point_weight": self.point_weight, "margin_weight": self.margin_weight}

    @property
    def citation(self) -> str:
        return "DisRanker (arXiv 2411.04539); Margin-MSE (arXiv 2010.02666)"


def minmax_per_row(x: Tensor, eps: float = 1e-6) -> Tensor:
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    return (x - lo) / (hi - lo).clamp_min(eps)


def hybrid_point_margin_mse(student: Tensor, teacher: Tensor, point_weight: float = 1.0,
                            margin_weight: float = 1.0) -> Tensor:
    """The pure function behind the loss: student/teacher scores of shape (batch, N)."""
    t = minmax_per_row(teacher.detach())
    point = nn.functional.mse_loss(student, t)
    s_diff = student.unsqueeze(2) - student.unsqueeze(1)
    t_diff = t.unsqueeze(2) - t.unsqueeze(1)
    margin = nn.functional.mse_loss(s_diff, t_diff)
    return point_weight * point + margin_weight * margin
