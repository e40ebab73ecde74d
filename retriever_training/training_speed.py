"""What makes the training stages (ranker, teacher scoring, student) fast enough for a CPU.

Measured on 2 CPU cores with AVX512-BF16, MiniLM at 256 tokens, one LambdaLoss step over 8 lists
of 10 passages: eval-mode forward+backward 11.3 s in fp32, 3.6 s under bf16 autocast. In train mode
the step took 7-9 s even under autocast: attention-probability dropout makes SDPA draw a random
mask over every (head, token, token) cell; with attention dropout off it took 4.4 s. So the loss
runs under bf16 autocast (master weights and optimizer state stay fp32) and attention dropout is
a config value, 0 by default (hidden-state dropout stays on).
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


def autocast_trainer(trainer_cls, bf16: bool):
    """A subclass of a (sentence-transformers) trainer whose loss runs under bf16 autocast;
    the backward pass follows the dtypes autocast chose, as torch recommends."""
    if not bf16:
        return trainer_cls
    import torch

    class AutocastTrainer(trainer_cls):
        def compute_loss(self, *args, **kwargs):
            with torch.autocast(self.args.device.type, dtype=torch.bfloat16):
                return super().compute_loss(*args, **kwargs)

    AutocastTrainer.__name__ = f"Bf16{trainer_cls.__name__}"
    return AutocastTrainer


def set_attention_dropout(model, p: float) -> int:
    """Set the attention-probability dropout of a (sentence-transformers or HF BERT-style) model,
    i.e. every dropout inside an attention block except the one on its output projection; the
    saved config is left as it was. Returns how many dropout layers were changed."""
    import torch

    changed = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and ".attention." in f".{name}." and not name.endswith("output.dropout"):
            module.p = p
            changed += 1
    return changed
