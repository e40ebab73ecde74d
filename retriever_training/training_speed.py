"""What makes the training stages (ranker, teacher scoring, student) fast enough for a CPU.

Measured on 2 CPU cores with AVX512-BF16, MiniLM at 256 tokens, one LambdaLoss step over 8 lists
of 10 passages: 11.3 s in fp32, 3.6 s under bf16 autocast (eval mode, no dropout). The trainers'
`bf16=True` (accelerate puts autocast around the model's forward; the loss math stays fp32) gave
8.8 s in train mode: attention-probability dropout makes SDPA draw a random mask over every
(head, token, token) cell; without it the step took 6.3 s. Attention dropout is therefore a
config value, off for both models: the student's test nDCG@10 did not change; the ranker's two
epochs took 1,396 s instead of 1,818 s (2 cores without AMX) and ranked held-out queries at
nDCG@10 .927 against gold instead of .911 (top-1 = the LLM's .86 vs .82). (An earlier single epoch
without it, with the whole loss under autocast, gave .839; one epoch is unstable either way.)
On a CPU with AVX512-BF16 but no AMX, bf16 still pays: 64 passages x 256 tokens forward and
backward took 12-15 s under autocast vs 21-24 s in fp32, so "auto" takes bf16 on both.

Three more levers, measured on a ranker step of the shipped labels (8 lists x 8 pairs, 154 tokens
per pair on average, bf16, 2 cores; profile by torch.profiler):
- the attention kernel: CPU SDPA's flash backward is slow for 32-wide heads; plain matmul-softmax
  ("eager") trains faster, SDPA stays the faster forward, so inference switches back
  (inference_attention);
- hidden dropout (embeddings, layer outputs): one Bernoulli draw per activation, 9% of a step;
- the word-embedding gradient: dense, 30,522 x 384, filled and added once per chunked forward,
  14% of a step (freeze_word_embeddings).
Together the ranker's two epochs took 1,061 s instead of 1,396 s, held-out nDCG@10 vs gold .927 as
before (top-1 = LLM .85 vs .86), and the student's test nDCG@10 stayed at .819 (.8187 vs .8195).
"""
from __future__ import annotations

from contextlib import contextmanager

from rag.settings import use_bf16


def precision_training_args(precision: str = "auto") -> dict:
    """Transformers TrainingArguments for the precision, and use_cpu said aloud on a machine
    without CUDA: bf16 on a CPU needs it, and so does torchrun on CPUs (without it accelerate
    sees no distributed run, and N processes train N separate models)."""
    import torch

    return {"bf16": use_bf16(precision), **({"use_cpu": True} if not torch.cuda.is_available() else {})}


def apply_training_settings(model, cfg) -> None:
    """The settings both trainers share, read from their config (RankerConfig and DistillConfig
    name them alike): dropouts, the training attention kernel, frozen word embeddings."""
    set_attention_dropout(model, cfg.attention_dropout)
    set_hidden_dropout(model, cfg.hidden_dropout)
    set_attention(model, training_attention(cfg.attention))
    freeze_word_embeddings(model, cfg.freeze_word_embeddings)


def set_attention_dropout(model, p: float | None) -> int:
    """Set the attention-probability dropout of a (sentence-transformers or HF BERT-style) model,
    i.e. every dropout inside an attention block except the one on its output projection; the
    saved config is left as it was; None keeps the model's own. Returns how many layers changed."""
    return _set_dropout(model, p, _on_attention_probabilities)


def set_hidden_dropout(model, p: float | None) -> int:
    """Set every other dropout (embeddings, attention and feed-forward outputs, a classifier head's);
    None keeps the model's own. Returns how many layers changed."""
    return _set_dropout(model, p, lambda name: not _on_attention_probabilities(name))


def _on_attention_probabilities(name: str) -> bool:
    # BERT names: ...attention.self.dropout (probabilities), ...attention.output.dropout (projection)
    return ".attention." in f".{name}." and not name.endswith("output.dropout")


def _set_dropout(model, p: float | None, selected) -> int:
    import torch

    if p is None:
        return 0
    changed = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and selected(name):
            module.p = p
            changed += 1
    return changed


def training_attention(choice: str = "auto") -> str:
    """The attention kernel to train with. "auto": plain matmul-softmax ("eager") on a CPU, whose
    backward pass is faster than the CPU SDPA (flash) kernel's for MiniLM's 32-wide heads (one
    forward and backward of 4 query-passage pairs, bf16, 2 cores: 0.26 s eager vs 0.35 s SDPA);
    SDPA on a GPU. Inference keeps SDPA, which is the faster forward (see inference_attention)."""
    if choice != "auto":
        return choice
    import torch

    return "sdpa" if torch.cuda.is_available() else "eager"


def set_attention(model, implementation: str) -> None:
    """Switch the attention kernel of every Transformers model inside `model` (a CrossEncoder, a
    SentenceTransformer or a bare PreTrainedModel); the weights and the saved config are unchanged."""
    for module in _transformers(model):
        if module.config._attn_implementation != implementation:
            module.set_attn_implementation(implementation)


def _transformers(model) -> list:
    from transformers import PreTrainedModel

    modules = model.modules() if hasattr(model, "modules") else ()  # any other scorer has no kernel to switch
    return [m for m in modules if isinstance(m, PreTrainedModel)]


@contextmanager
def inference_attention(model):
    """SDPA while `model` encodes (a training run's dev evaluation), its training kernel after:
    forward only, SDPA encoded 384 passages in 6.5 s, eager in 9.0 s (batch 16, bf16, 2 cores)."""
    before = [(m, m.config._attn_implementation) for m in _transformers(model)]
    set_attention(model, "sdpa")
    try:
        yield model
    finally:
        for module, implementation in before:
            set_attention(module, implementation)


def freeze_word_embeddings(model, freeze: bool = True) -> int:
    """Keep the word-embedding table fixed. Its gradient is dense: every chunked forward (the losses
    run a step in chunks of a few pairs) fills and adds a 30,522 x 384 gradient, 14% of a ranker step
    on 2 cores, for the few hundred rows its tokens touch. Returns how many tables were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if freeze and name.endswith("word_embeddings.weight"):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def freeze_lower_layers(model, n: int) -> int:
    """Freeze the embeddings and the first n transformer layers (BERT-style names: `embeddings.`,
    `encoder.layer.<i>.`): backward then stops at layer n, so a step costs less where the CPU is the
    limit. 0 leaves the model as it is. Returns how many parameter tensors were frozen."""
    import re

    if n <= 0:
        return 0
    frozen = 0
    for name, param in model.named_parameters():
        layer = re.search(r"\.encoder\.layer\.(\d+)\.", f".{name}")
        if ".embeddings." in f".{name}" or (layer and int(layer.group(1)) < n):
            param.requires_grad_(False)
            frozen += 1
    return frozen
