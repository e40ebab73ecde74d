"""Where things live and the offline environment every entry point applies.

Paths default to the user's cache dir (XDG) and move with `DISTILRAG_HOME`.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPORA_DIR = REPO_ROOT / "corpora"


def home() -> Path:
    """Root for large, regenerable artefacts (models, indexes, caches). Never committed."""
    root = os.environ.get("DISTILRAG_HOME")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "distilrag"


def models_dir() -> Path:
    return Path(os.environ.get("DISTILRAG_MODELS_DIR", home() / "models")).expanduser()


def indexes_dir() -> Path:
    return home() / "indexes"


def vector_store() -> str:
    """Where dense indexes live: "faiss" (files under indexes_dir(), the default) or "milvus"
    (rag.milvus_index: the embedded engine's file or a Milvus server)."""
    store = os.environ.get("DISTILRAG_VECTOR_STORE", "faiss").strip().lower() or "faiss"
    if store not in ("faiss", "milvus"):
        from rag.errors import UserError

        raise UserError(f"DISTILRAG_VECTOR_STORE is {store!r}: use faiss (the default) or milvus.")
    return store


def runs_dir() -> Path:
    return Path(os.environ.get("DISTILRAG_RUNS_DIR", REPO_ROOT / "runs")).expanduser()


@lru_cache(maxsize=1)
def apply_offline_env() -> None:
    """Make every library behave offline and quietly; called by each entry point.

    Hub names cost ~70 s of retries, tiktoken and ragas phone home, and Streamlit collects
    usage stats unless told not to, so the product sets these itself instead of trusting the shell.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "false")
    try:  # llama-index ships the tiktoken BPE files; point tiktoken at them instead of the web.
        import importlib.util

        spec = importlib.util.find_spec("llama_index.core")
        if spec and spec.origin:
            cache = Path(spec.origin).parent / "_static" / "tiktoken_cache"
            if cache.is_dir():
                os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    except ImportError:
        pass


def set_torch_threads(n: int | None = None) -> None:
    """Two cores oversubscribed run 10-25x slower: keep torch to the threads we were given."""
    n = n or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)
    import torch

    torch.set_num_threads(n)


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
