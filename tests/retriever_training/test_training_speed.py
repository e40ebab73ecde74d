"""The CPU speed levers of the training stages: batch sampler, bf16 choice, dropouts, attention kernel, frozen layers."""
import pickle
from collections import Counter

import pytest
import torch

from rag.settings import use_bf16
from retriever_training.distill import DocumentBatchSampler
from retriever_training.training_speed import (apply_training_settings, freeze_word_embeddings, inference_attention,
                                               set_attention, set_attention_dropout, set_hidden_dropout,
                                               training_attention)


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


def tiny_bert(cls_name="BertModel", **kw):
    import transformers

    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=50, attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1, **kw)
    return getattr(transformers, cls_name)(config)


def test_set_hidden_dropout_changes_every_dropout_but_attention_probabilities():
    model = tiny_bert("BertForSequenceClassification", num_labels=1)
    # embeddings, per layer attention output + feed-forward output, the classifier head
    assert set_hidden_dropout(model, 0.0) == 1 + 2 * 2 + 1
    ps = Counter((name.rsplit(".", 2)[-2] if "." in name else "", m.p)
                 for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout))
    assert ps[("self", 0.1)] == 2 and sum(n for (where, p), n in ps.items() if p == 0.1) == 2
    assert set_hidden_dropout(model, None) == 0 and model.config.hidden_dropout_prob == 0.1


def test_attention_kernel_switch_keeps_outputs_and_inference_context_restores_it():
    model = tiny_bert(attn_implementation="sdpa").eval()
    ids = torch.tensor([[1, 5, 7, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    before = model(input_ids=ids, attention_mask=mask).last_hidden_state
    set_attention(model, "eager")
    assert model.config._attn_implementation == "eager"
    assert torch.allclose(model(input_ids=ids, attention_mask=mask).last_hidden_state, before, atol=1e-5)
    with inference_attention(model):
        assert model.config._attn_implementation == "sdpa"
    assert model.config._attn_implementation == "eager"
    with pytest.raises(RuntimeError), inference_attention(model):
        raise RuntimeError("an evaluation that fails still gives the training kernel back")
    assert model.config._attn_implementation == "eager"


def test_training_attention_choice():
    assert training_attention("sdpa") == "sdpa" and training_attention("eager") == "eager"
    assert training_attention("auto") == ("sdpa" if torch.cuda.is_available() else "eager")


def test_freeze_word_embeddings_leaves_positions_and_layers_trainable():
    model = tiny_bert("BertForSequenceClassification", num_labels=1)
    assert freeze_word_embeddings(model, False) == 0
    assert freeze_word_embeddings(model) == 1
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is None) is name.endswith("word_embeddings.weight"), name


def test_both_trainer_configs_carry_the_shared_training_settings():
    from retriever_training.distill import DistillConfig
    from retriever_training.train_ranker import RankerConfig

    for cfg in (RankerConfig(), DistillConfig(hidden_dropout=0.05, freeze_word_embeddings=False, attention="sdpa")):
        model = tiny_bert("BertForSequenceClassification", num_labels=1, attn_implementation="sdpa")
        apply_training_settings(model, cfg)
        ps = {m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "self" not in name}
        assert ps == {cfg.hidden_dropout}
        assert model.config._attn_implementation == training_attention(cfg.attention)
        assert model.bert.embeddings.word_embeddings.weight.requires_grad is not cfg.freeze_word_embeddings


def test_use_cpu_is_said_aloud_on_a_cpu_without_bf16(monkeypatch):
    """Without use_cpu, accelerate sees no distributed run under torchrun on CPUs, and each
    process trains a model of its own (the 2-process student then fails on its dev metrics)."""
    import torch

    from retriever_training import training_speed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(training_speed, "use_bf16", lambda precision: False)
    assert training_speed.precision_training_args("fp32") == {"bf16": False, "use_cpu": True}
    monkeypatch.setattr(training_speed, "use_bf16", lambda precision: True)
    assert training_speed.precision_training_args("auto") == {"bf16": True, "use_cpu": True}
