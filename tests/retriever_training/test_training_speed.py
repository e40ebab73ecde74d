"""The CPU speed levers of the training stages: batch sampler, bf16 choice, attention dropout, frozen layers."""
import pickle
from collections import Counter

import pytest
import torch

from retriever_training.distill import DocumentBatchSampler
from retriever_training.training_speed import set_attention_dropout, use_bf16


def make_sampler(groups, batch_size=4, drop_last=False, seed=0):
    factory = pickle.loads(pickle.dumps(DocumentBatchSampler(groups)))  # checkpoints pickle the args
    return factory(list(range(len(groups))), batch_size=batch_size, drop_last=drop_last,
                   valid_label_columns=None, generator=None, seed=seed)


def test_document_sampler_covers_every_row_once_and_keeps_groups_together():
    groups = ["a"] * 8 + ["b"] * 8 + ["c"] * 3
    sampler = make_sampler(groups)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    assert sorted(i for b in batches for i in b) == list(range(len(groups)))
    # groups of 8 fill whole batches of 4: each of those batches holds a single group
    mixed = [b for b in batches if len({groups[i] for i in b}) > 1]
    assert len(mixed) == 0
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled every epoch
    sampler.set_epoch(0)
    assert list(sampler) == batches  # and reproducibly


def test_document_sampler_drop_last():
    sampler = make_sampler(["a"] * 6, batch_size=4, drop_last=True)
    assert [len(b) for b in sampler] == [4] and len(sampler) == 1


def test_use_bf16_choices():
    assert use_bf16("bf16") is True and use_bf16("fp32") is False
    assert isinstance(use_bf16("auto"), bool)
    with pytest.raises(ValueError, match="auto, bf16 or fp32"):
        use_bf16("fp16")


def test_set_attention_dropout_changes_only_attention_probabilities():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 vocab_size=50, attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1))
    assert set_attention_dropout(model, 0.0) == 2
    ps = Counter((name.rsplit(".", 2)[-2], m.p) for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout))
    assert ps[("self", 0.0)] == 2                      # attention.self.dropout: off
    assert all(p == 0.1 for (where, p) in ps if where != "self")  # hidden-state dropouts untouched
    assert model.config.attention_probs_dropout_prob == 0.1  # the saved config is unchanged


def test_freeze_lower_layers_stops_gradients_below_layer_n():
    from transformers import BertConfig, BertForSequenceClassification

    from retriever_training.training_speed import freeze_lower_layers

    model = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                                     intermediate_size=64, vocab_size=50, num_labels=1))
    assert freeze_lower_layers(model, 0) == 0 and all(p.requires_grad for p in model.parameters())
    assert freeze_lower_layers(model, 2) > 0
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    for name, p in model.named_parameters():
        frozen = "embeddings." in name or ".layer.0." in name or ".layer.1." in name
        assert p.requires_grad is not frozen, name
        assert (p.grad is None) is frozen, name  # no gradient computed below layer 2, one above
