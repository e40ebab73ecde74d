"""Distillation losses for the bi-encoder student that sentence-transformers does not ship.

The listwise KL with in-batch negatives (distill's `kl`: each distinct passage of a batch is
encoded once, and every query also learns from the other queries' candidates; without the
in-batch term it equals sentence-transformers' `DistillKLDivLoss`, which the tests check) and
DisRanker's hybrid loss.
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


class ListwiseKLInBatchLoss(nn.Module):
    """KL divergence between the teacher's softmax over a query's candidate list and the student's
    softmax over that list plus every other passage in the batch (in-batch negatives, target 0).

    Why: KL over the candidate list alone teaches the order among the first stage's top-N but never
    that the rest of the corpus ranks below them, which is what retrieval from the whole corpus
    needs. Batches built from queries on the same document (distill.py's sampler) share most of
    their candidates, so the extra negatives are hard ones, and encoding each distinct passage once
    makes a step several times cheaper than one forward per (query, candidate) slot.

    Args:
        model: the SentenceTransformer student.
        student_temperature: cosine scores are divided by it (cosines live in [-1, 1]).
        teacher_temperature: teacher scores (raw ranker logits) are divided by it.
        in_batch_negatives: False restricts the student's softmax to the query's own list, i.e.
            plain listwise KL (still with one forward per distinct passage).
        rows_per_forward: distinct passages per forward pass, shortest first, each chunk padded only
            to its own longest passage (0 = all in one forward, padded to the batch's longest). The
            loss is the same; on a CPU the padding is compute, and a batch padded to its longest
            passage is mostly padding.
        gather_across_devices: under DDP (torchrun), every process's passages are negatives for
            every query, as sentence-transformers' losses of that name do: the loss is then the one
            of a single process over the union of the batches (each process's own batch stays
            grouped by document).

    Inputs: (query, doc_1, ..., doc_N) columns; labels are the teacher scores, shape (batch, N).
    """

    def __init__(self, model, student_temperature: float = 0.05, teacher_temperature: float = 1.0,
                 in_batch_negatives: bool = True, rows_per_forward: int = 0, gather_across_devices: bool = True):
        super().__init__()
        self.gather_across_devices = gather_across_devices
        self.model = model
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.in_batch_negatives = in_batch_negatives
        self.rows_per_forward = rows_per_forward

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        queries = self.model(features[0])["sentence_embedding"]
        unique, index = unique_rows(features[1:])
        if unique is None:  # columns that cannot be merged: one forward per column, no sharing
            docs = torch.cat([self.model(f)["sentence_embedding"] for f in features[1:]])
        else:
            docs = embed_by_length(self.model, unique, self.rows_per_forward)
        if self.in_batch_negatives and self.gather_across_devices:
            keys = passage_keys(unique["input_ids"]) if unique is not None else None
            docs, index = gather_passages(docs, index.to(docs.device), keys)
        return listwise_kl_in_batch(queries, docs, index.to(docs.device), labels, self.student_temperature,
                                    self.teacher_temperature, self.in_batch_negatives)

    def get_config_dict(self) -> dict:
        return {"student_temperature": self.student_temperature, "teacher_temperature": self.teacher_temperature,
                "in_batch_negatives": self.in_batch_negatives, "rows_per_forward": self.rows_per_forward,
                "gather_across_devices": self.gather_across_devices}


def passage_keys(input_ids: Tensor) -> Tensor:
    """Two hashes of each row's token ids, (rows, 2): the same passage gets the same key in every
    process whatever its batch's padding (pad id 0 adds nothing). Ids below 2^20 times multipliers
    below 2^31, over up to 2^11 positions, stay below 2^62: no sum overflows int64."""
    g = torch.Generator().manual_seed(20240917)  # the same multipliers in every process
    # (positions, 2), drawn row by row: position t gets the same pair whatever the width
    mult = torch.randint(1, 2**31, (input_ids.shape[1], 2), generator=g).to(input_ids.device)
    return input_ids.long() @ mult


def gather_passages(docs: Tensor, index: Tensor, keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Every process's distinct passage embeddings, in rank order, and this process's index into
    them; unchanged outside DDP. Processes hold different numbers of passages, so each pads to the
    largest before the gather (which keeps the gradient flowing back to the process that encoded a
    passage) and the padding rows are dropped after. With `keys` (passage_keys) a passage that
    several processes hold is kept once, at its first copy: a second copy would be a negative
    identical to the query's own positive."""
    from sentence_transformers.util.distributed import all_gather, all_gather_with_grad, get_rank, get_world_size

    if get_world_size() == 1:
        return docs, index
    sizes = all_gather(torch.tensor([docs.shape[0]], device=docs.device)).tolist()
    width = max(sizes)

    def pad(x: Tensor) -> Tensor:
        return torch.cat([x, x.new_zeros(width - x.shape[0], *x.shape[1:])]) if x.shape[0] < width else x

    rows = torch.cat([torch.arange(n, device=docs.device) + r * width for r, n in enumerate(sizes)])
    everyone = all_gather_with_grad(pad(docs))[rows]
    local = index + sum(sizes[:get_rank()])
    if keys is None:
        return everyone, local
    all_keys = all_gather(pad(keys))[rows]
    _, inverse = torch.unique(all_keys, dim=0, return_inverse=True)
    n = all_keys.shape[0]
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=docs.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=docs.device), reduce="amin")
    kept = torch.sort(first).values
    position = torch.empty(n, dtype=torch.long, device=docs.device)
    position[kept] = torch.arange(kept.shape[0], device=docs.device)
    return everyone[kept], position[first[inverse[local]]]


def embed_by_length(model, features: dict, rows_per_forward: int = 0) -> Tensor:
    """model(features)["sentence_embedding"], computed in chunks of rows_per_forward rows sorted by
    length, each chunk cut to its own longest row; rows come back in their input order."""
    mask = features["attention_mask"]
    n = mask.shape[0]
    if rows_per_forward <= 0 or n <= rows_per_forward:
        return model(features)["sentence_embedding"]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for start in range(0, n, rows_per_forward):
        rows = order[start:start + rows_per_forward]
        parts.append(model(select_rows(features, rows, int(lengths[rows].max())))["sentence_embedding"])
    return torch.cat(parts)[torch.argsort(order)]


def select_rows(features: dict, rows: Tensor, width: int) -> dict:
    """The given rows of a tokenized batch, every per-token tensor cut to its first `width` columns
    (right padding); values that are not per-row tensors pass through."""
    n, seq = features["input_ids"].shape
    out = {}
    for key, value in features.items():
        if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == n and key != "prompt_length":
            value = value[rows]
            out[key] = value[:, :width] if value.ndim >= 2 and value.shape[1] == seq else value
        else:
            out[key] = value
    return out


def unique_rows(columns: list[dict]) -> tuple[dict | None, Tensor]:
    """Merge the candidate columns into one batch of distinct token sequences.

    Returns (features of the distinct rows, index) where index[b, n] is the row holding query b's
    n-th candidate; (None, column-major arange) when the columns cannot be merged.
    """
    from sentence_transformers.base.losses.merged_forward import merge_feature_batches

    batch = columns[0]["input_ids"].shape[0]
    merged = merge_feature_batches(columns) if len(columns) > 1 else dict(columns[0])
    if merged is None:
        return None, torch.arange(batch * len(columns)).reshape(len(columns), batch).T
    ids = merged["input_ids"]
    _, inverse = torch.unique(ids, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), ids.shape[0], dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, torch.arange(ids.shape[0], device=ids.device), reduce="amin")
    mask = merged["attention_mask"][first]
    width = int(mask.any(0).nonzero().max()) + 1  # drop columns that are padding for every kept row
    return select_rows(merged, first, width), inverse.reshape(len(columns), batch).T


def listwise_kl_in_batch(queries: Tensor, docs: Tensor, index: Tensor, teacher: Tensor,
                         student_temperature: float = 0.05, teacher_temperature: float = 1.0,
                         in_batch_negatives: bool = True) -> Tensor:
    """The pure function behind the loss.

    queries (B, d), docs (U, d) distinct passages, index (B, N) into docs, teacher (B, N) scores.
    KL(p_teacher || p_student) per query, averaged; p_teacher puts zero mass outside the own list.
    """
    with torch.autocast(queries.device.type, enabled=False):  # softmax over 1/T-scaled cosines: fp32
        return _listwise_kl(queries.float(), docs.float(), index, teacher.float(), student_temperature,
                            teacher_temperature, in_batch_negatives)


def _listwise_kl(queries, docs, index, teacher, student_temperature, teacher_temperature, in_batch_negatives):
    q = nn.functional.normalize(queries, dim=-1)
    d = nn.functional.normalize(docs, dim=-1)
    logits = q @ d.T / student_temperature                                   # (B, U)
    target = torch.zeros_like(logits).scatter_add(
        1, index, torch.softmax(teacher.detach().float() / teacher_temperature, dim=1))
    if not in_batch_negatives:
        own = torch.zeros_like(logits, dtype=torch.bool).scatter(1, index, True)
        logits = logits.masked_fill(~own, float("-inf"))
    log_student = torch.log_softmax(logits, dim=1)
    positive = target > 0  # 0 * log 0 is taken as 0; masked entries would otherwise give nan
    kl = torch.where(positive, target * (torch.log(target.clamp_min(1e-30)) - log_student), torch.zeros_like(target))
    return kl.sum(dim=1).mean()
