"""FAISS vector index through LlamaIndex's FAISS vector store, persisted with a manifest.

    distilrag index --corpus squad_dev --embedder base [--index-type flat|ivf|hnsw] [--rebuild]

In:  a Corpus and an embedder ("base", "distilled" or a model directory)
Out: <home>/indexes/<corpus>/<embedder label>/ with LlamaIndex storage + faiss index + manifest.json

Vectors are L2-normalised and searched by inner product (= cosine). The manifest records the
embedder's identity (path and weights hash), dimension, corpus hash and chunking; an index whose
embedder or corpus differs from the one asked for is refused, never used silently.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from rag.corpus import Corpus, passage_text
from rag.embedder import EmbedderId, llama_index_embedding, load_sentence_transformer, resolve_embedder
from rag.records import write_json
from rag.settings import apply_offline_env, indexes_dir
from rag.errors import UserError

MANIFEST = "manifest.json"
INDEX_TYPES = ("flat", "ivf", "hnsw")


class IndexMismatchError(UserError, RuntimeError):
    """The index on disk was built for another embedder or corpus; it must be rebuilt."""


class IndexMissingError(UserError, FileNotFoundError):
    pass


@dataclass(frozen=True)
class Manifest:
    corpus: str
    corpus_hash: str
    n_passages: int
    chunking: dict
    embedder_label: str
    embedder_path: str
    embedder_hash: str
    dim: int
    index_type: str
    metric: str = "inner_product (normalised vectors = cosine)"
    built_at: str = ""
    build_seconds: float = 0.0


def index_dir(corpus_name: str, embedder_label: str) -> Path:
    return indexes_dir() / corpus_name / embedder_label


def read_manifest(path: Path) -> Manifest:
    return Manifest(**json.loads((path / MANIFEST).read_text()))


def check_manifest(m: Manifest, eid: EmbedderId, corpus: Corpus | None, path: Path) -> None:
    if m.embedder_hash != eid.weights_hash:
        raise IndexMismatchError(
            f"The index at {path} was built with embedder '{m.embedder_label}' "
            f"({m.embedder_path}, weights {m.embedder_hash[:12]}) but the query embedder is "
            f"'{eid.label}' ({eid.path}, weights {eid.weights_hash[:12]}). Rebuild it: "
            f"`distilrag index --corpus {m.corpus} --embedder {eid.spec} --rebuild`."
        )
    if corpus is not None and m.corpus_hash != corpus.hash:
        raise IndexMismatchError(
            f"The index at {path} was built for another version of corpus '{m.corpus}' "
            f"(hash {m.corpus_hash}, now {corpus.hash}). Rebuild it: "
            f"`distilrag index --corpus {m.corpus} --embedder {eid.spec} --rebuild`."
        )


def _faiss_index(vectors, index_type: str):
    import faiss

    n, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "ivf":
        # ~4*sqrt(n) lists, but at least 39 training points per list as faiss wants.
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, nlist // 8)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
    return index


def encode_passages(eid: EmbedderId, corpus: Corpus, batch_size: int = 64, progress: bool = True,
                    on_progress: Callable[[int, int], None] | None = None):
    """Normalised passage vectors; `on_progress(done, total)` lets a UI draw its own bar."""
    import numpy as np

    model = load_sentence_transformer(eid.path)
    texts = [passage_text(p) for p in corpus.passages]
    if on_progress is None:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=progress).astype("float32")
    parts, step = [], batch_size * 8
    for i in range(0, len(texts), step):
        parts.append(model.encode(texts[i:i + step], batch_size=batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False))
        on_progress(min(i + step, len(texts)), len(texts))
    return np.concatenate(parts).astype("float32")


def build_index(corpus: Corpus, embedder: str | EmbedderId = "base", index_type: str = "flat",
                out_dir: Path | None = None, progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Embed every passage, build the FAISS index and persist it (atomically) with its manifest."""
    apply_offline_env()
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.faiss import FaissVectorStore

    eid = embedder if isinstance(embedder, EmbedderId) else resolve_embedder(embedder)
    out_dir = out_dir or index_dir(corpus.name, eid.label)
    t0 = time.perf_counter()
    vectors = encode_passages(eid, corpus, progress=progress, on_progress=on_progress)
    nodes = [TextNode(id_=p.docid, text=p.text, embedding=v.tolist(),
                      metadata={"docid": p.docid, "title": p.title, "source": p.source},
                      excluded_embed_metadata_keys=["docid", "source"],
                      excluded_llm_metadata_keys=["docid", "source"])
             for p, v in zip(corpus.passages, vectors)]
    store = FaissVectorStore(faiss_index=_faiss_index(vectors, index_type))
    storage = StorageContext.from_defaults(vector_store=store)
    VectorStoreIndex(nodes, storage_context=storage, embed_model=llama_index_embedding(eid),
                     show_progress=False)
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    storage.persist(persist_dir=str(tmp))
    manifest = Manifest(corpus=corpus.name, corpus_hash=corpus.hash, n_passages=len(corpus),
                        chunking=corpus.chunking, embedder_label=eid.label, embedder_path=eid.path,
                        embedder_hash=eid.weights_hash, dim=int(vectors.shape[1]),
                        index_type=index_type, built_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                        build_seconds=round(time.perf_counter() - t0, 2))
    write_json(tmp / MANIFEST, asdict(manifest))
    # Swap in the finished directory so a crash never leaves a half-written index under the real name.
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def load_index(path: Path, eid: EmbedderId, corpus: Corpus | None = None):
    """Load a persisted index after checking its manifest against the embedder (and corpus)."""
    apply_offline_env()
    from llama_index.core import StorageContext, load_index_from_storage
    from llama_index.vector_stores.faiss import FaissVectorStore

    if not (path / MANIFEST).exists():
        raise IndexMissingError(f"No index at {path}. Build it with `distilrag index`.")
    check_manifest(read_manifest(path), eid, corpus, path)
    store = FaissVectorStore.from_persist_dir(str(path))
    storage = StorageContext.from_defaults(vector_store=store, persist_dir=str(path))
    return load_index_from_storage(storage, embed_model=llama_index_embedding(eid))


def get_index(corpus: Corpus, embedder: str = "base", index_type: str = "flat",
              rebuild: bool = False, progress: bool = True):
    """The index for (corpus, embedder): loaded when valid, built when missing or when asked.

    A stale index (other embedder weights or corpus version) raises IndexMismatchError unless
    `rebuild` is set: rebuilding is the caller's explicit choice.
    """
    eid = resolve_embedder(embedder)
    path = index_dir(corpus.name, eid.label)
    if rebuild or not (path / MANIFEST).exists():
        build_index(corpus, eid, index_type=index_type, out_dir=path, progress=progress)
    return load_index(path, eid, corpus)
