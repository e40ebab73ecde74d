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
"""
from __future__ import annotations


def use_bf16(precision: str = "auto") -> bool:
    """"auto" takes bf16 where the hardware does it natively: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16/AMX. "bf16" and "fp32" force the choice."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without these probes: stay on fp32
        return False


def precision_training_args(precision: str = "auto") -> dict:
    """Transformers TrainingArguments for the precision: bf16 on a CPU needs use_cpu said aloud."""
    import torch

    bf16 = use_bf16(precision)
    return {"bf16": bf16, **({"use_cpu": True} if bf16 and not torch.cuda.is_available() else {})}


def set_attention_dropout(model, p: float | None) -> int:
    """Set the attention-probability dropout of a (sentence-transformers or HF BERT-style) model,
    i.e. every dropout inside an attention block except the one on its output projection; the
    saved config is left as it was; None keeps the model's own. Returns how many layers changed."""
    import torch

    if p is None:
        return 0
    changed = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and ".attention." in f".{name}." and not name.endswith("output.dropout"):
            module.p = p
            changed += 1
    return changed


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
