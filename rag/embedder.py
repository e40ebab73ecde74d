"""Bi-encoders by name or path: "base" (all-MiniLM-L6-v2), "distilled" (the latest published
distilled model), or any sentence-transformers model directory.

Every embedder has an identity (label, path, sha256 of its weights) that index manifests record,
so an index is never queried with vectors from another model.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.settings import apply_offline_env, home
from rag.errors import UserError

PUBLISHED = ("distilled", "ranker")  # names that resolve to the last published model of that kind
# "pipelines": the verdict of a retrain whose student was refused, when no distilled model serves
# the corpus (its best pipeline without the student is what the corpus is served with)
POINTERS = (*PUBLISHED, "pipelines")


@dataclass(frozen=True)
class EmbedderId:
    label: str        # "base", "distilled" or path_label(directory)
    path: str
    weights_hash: str

    @property
    def key(self) -> str:
        return f"{self.label}-{self.weights_hash[:10]}"

    @property
    def spec(self) -> str:
        """What names this embedder again on the command line."""
        return self.label if self.label in ("base", "distilled") else self.path


def path_label(path: str | Path) -> str:
    """A short name for a model directory that keeps runs apart: every retrain writes a folder
    called student/ or model/, so runs/a/student and runs/b/student are "a-student" and "b-student"."""
    p = Path(path).expanduser()
    return f"{p.parent.name}-{p.name}" if p.parent.name not in ("", ".", "..") else p.name


class EmbedderNotFound(UserError, FileNotFoundError):
    pass


def _published_file(corpus) -> Path:
    from rag.corpus import corpus_key

    return home() / "published" / f"{corpus_key(corpus)}.json"


def published_path(kind: str, corpus=None) -> Path | None:
    """What "distilled" / "ranker" mean for `corpus` (a Corpus, or its name or path):
    $DISTILRAG_DISTILLED / $DISTILRAG_RANKER when set, else the model the trainer last published
    for that corpus. Each corpus keeps its own: a retrain on another corpus never re-points this
    one's chat; a model made for another corpus is used only when named by its path.
    "pipelines": the file of a refused student's verdict (POINTERS)."""
    if kind not in POINTERS:
        raise ValueError(f"kind must be one of {POINTERS}")
    env = os.environ.get(f"DISTILRAG_{kind.upper()}") if kind in PUBLISHED else None
    if env:
        return Path(env).expanduser()
    if corpus is None:
        return None
    try:
        pointers = json.loads(_published_file(corpus).read_text())
        p = Path(pointers[kind])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return p if p.exists() else None


def set_published(kind: str, path: Path, corpus) -> None:
    """Make `path` what `kind` ("distilled", "ranker" or "pipelines") means for `corpus` in the
    app, the CLI and the harness."""
    from rag.records import _atomic_text

    if kind not in POINTERS:
        raise ValueError(f"kind must be one of {POINTERS}")
    f = _published_file(corpus)
    try:
        pointers = json.loads(f.read_text())
        pointers = pointers if isinstance(pointers, dict) else {}
    except (OSError, ValueError):
        pointers = {}
    pointers[kind] = str(Path(path).resolve())
    f.parent.mkdir(parents=True, exist_ok=True)
    _atomic_text(f, json.dumps(pointers, indent=1, sort_keys=True) + "\n")


def resolve_embedder(name: str | Path, corpus=None) -> EmbedderId:
    """"base", "distilled" (the model published for `corpus`) or a model directory."""
    name = str(name)
    if name == "base":
        from rag.models import base_embedder_path

        path, label = base_embedder_path(), "base"
    elif name == "distilled":
        path = published_path("distilled", corpus)
        if path is None:
            from rag.corpus import corpus_key

            which = corpus_key(corpus) if corpus is not None else "this corpus"
            raise EmbedderNotFound(
                f"No distilled retriever is published for {which} yet. Train one with "
                f"`distilrag retrain --corpus <the corpus>` (the shipped corpus: `--config "
                f"retriever_training/configs/squad_dev.yaml`), or name a model directory.")
        label = "distilled"
    else:
        path = Path(name).expanduser()
        label = path_label(path)
    if not (Path(path) / "config.json").exists() and not (Path(path) / "modules.json").exists():
        raise EmbedderNotFound(f"{path} is not a sentence-transformers model directory (no modules.json).")
    return EmbedderId(label=label, path=str(path), weights_hash=weights_hash(Path(path)))


def weights_hash(model_dir: Path) -> str:
    """sha256 over the weight files (names + bytes), so a retrained model gets a new identity.
    Cached per file size and mtime: a long-lived app sees a model retrained in place."""
    files = sorted(p for p in Path(model_dir).rglob("*")
                   if p.suffix in {".safetensors", ".bin", ".pt"} and p.is_file())
    if not files:
        raise EmbedderNotFound(f"{model_dir} holds no weight files (.safetensors/.bin).")
    stats = tuple((f.relative_to(model_dir).as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _weights_hash(Path(model_dir), stats)


@lru_cache(maxsize=16)
def _weights_hash(model_dir: Path, stats: tuple) -> str:
    h = hashlib.sha256()
    for name, _, _ in stats:
        h.update(name.encode())
        with open(model_dir / name, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=4)
def load_sentence_transformer(path: str, device: str = "cpu"):
    """One loaded copy per model directory per process."""
    apply_offline_env()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - install hint
        raise ImportError("Embedding needs `pip install sentence-transformers` (see pyproject.toml).") from e
    return SentenceTransformer(path, device=device)


def llama_index_embedding(eid: EmbedderId):
    """The same loaded model behind LlamaIndex's embedding interface (normalised: cosine via IP)."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class SentenceTransformerEmbedding(BaseEmbedding):
        _model: object = PrivateAttr()

        def __init__(self, model, **kw):
            super().__init__(**kw)
            self._model = model

        def _encode(self, texts: list[str]) -> list[list[float]]:
            return self._model.encode(texts, normalize_embeddings=True, batch_size=64).tolist()

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._encode([query])[0]

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._encode([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._encode(texts)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return SentenceTransformerEmbedding(load_sentence_transformer(eid.path), model_name=eid.key)
