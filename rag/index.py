"""FAISS vector index through LlamaIndex's FAISS vector store, persisted with a manifest.

    distilrag index --corpus squad_dev --embedder base [--index-type flat|ivf|hnsw] [--rebuild]
    distilrag index --vector-store milvus [--milvus-uri URI] ...   Milvus instead (rag/milvus_index.py)

In:  a Corpus and an embedder ("base", "distilled" or a model directory)
Out: <home>/indexes/<corpus key>/<embedder label>/ with LlamaIndex storage + faiss index + manifest.json
     (the key is the name of a shipped corpus, else name-<content hash>: every BEIR corpus.jsonl
     is called "corpus" and many folders are called "docs", and they must not share an index)

Vectors are L2-normalised and searched by inner product (= cosine). The manifest records the
embedder's identity (path and weights hash), dimension, corpus hash, chunking and the size of each
stored file. An index of another embedder is refused (rebuilding is the caller's choice); one that
is damaged (truncated, zeroed, missing or foreign files, a bad manifest, vector counts that do not
match) or built for another corpus is rebuilt by `get_index` with a warning, never used silently.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from rag.corpus import Corpus, passage_node, passage_text
from rag.embedder import EmbedderId, llama_index_embedding, load_sentence_transformer, resolve_embedder
from rag.index_manifest import (MANIFEST, IndexCorpusMismatchError, IndexDamagedError,  # noqa: F401 (this API)
                                IndexMismatchError, IndexMissingError, Manifest, check_manifest, index_dir,
                                index_key, read_manifest)
from rag.records import write_json
from rag.settings import apply_offline_env, indexes_dir, vector_store

INDEX_TYPES = ("flat", "ivf", "hnsw")


def faiss_index(vectors, index_type: str):
    """An empty-or-trained FAISS index of `index_type` for these (normalised) vectors: what
    `distilrag index --index-type` builds (benchmarks/bench_scale.py measures the same)."""
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
        # faiss's default efConstruction (40) builds a graph that tops out below recall@10 .95 at 1M
        # whatever efSearch is (docs/scale.md); a wider build search costs build time, not query time.
        index.hnsw.efConstruction = 200
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


def index_location(corpus: Corpus, eid: EmbedderId) -> str:
    """Where the (corpus, embedder) index is in the configured store, as messages name it."""
    if vector_store() == "milvus":
        from rag.milvus_index import collection_name, milvus_uri, where

        return where(milvus_uri(), collection_name(corpus, eid.label))
    return str(index_dir(corpus, eid.label))


def stored_manifest(corpus: Corpus, eid: EmbedderId) -> Manifest | None:
    """The manifest of the (corpus, embedder) index in the configured store, None when there is
    none; IndexDamagedError when it cannot be read."""
    if vector_store() == "milvus":
        from rag.milvus_index import milvus_manifest

        return milvus_manifest(corpus, eid)
    path = index_dir(corpus, eid.label)
    return read_manifest(path) if (path / MANIFEST).exists() else None


def build_index(corpus: Corpus, embedder: str | EmbedderId = "base", index_type: str = "flat",
                out_dir: Path | None = None, progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None) -> Path | str:
    """Embed every passage, build the index in the configured store (rag.settings.vector_store)
    and persist it atomically with its manifest; returns where it is."""
    apply_offline_env()
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.vector_stores.faiss import FaissVectorStore

    eid = embedder if isinstance(embedder, EmbedderId) else resolve_embedder(embedder, corpus)
    t0 = time.perf_counter()
    vectors = encode_passages(eid, corpus, progress=progress, on_progress=on_progress)
    if vector_store() == "milvus" and out_dir is None:
        from rag.milvus_index import build_milvus_index

        return build_milvus_index(corpus, eid, vectors, t0)
    out_dir = out_dir or index_dir(corpus, eid.label)
    nodes = [passage_node(p, v.tolist()) for p, v in zip(corpus.passages, vectors)]
    store = FaissVectorStore(faiss_index=faiss_index(vectors, index_type))
    storage = StorageContext.from_defaults(vector_store=store)
    VectorStoreIndex(nodes, storage_context=storage, embed_model=llama_index_embedding(eid),
                     show_progress=False)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A private temp dir: two processes building the same index never write into each other's files.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        storage.persist(persist_dir=str(tmp))
        files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir()) if f.is_file()}
        manifest = Manifest(corpus=corpus.name, corpus_hash=corpus.hash, n_passages=len(corpus),
                            chunking=corpus.chunking, embedder_label=eid.label, embedder_path=eid.path,
                            embedder_hash=eid.weights_hash, dim=int(vectors.shape[1]),
                            index_type=index_type, built_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                            build_seconds=round(time.perf_counter() - t0, 2), files=files)
        write_json(tmp / MANIFEST, asdict(manifest))
        os.chmod(tmp, 0o755)
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Put the finished directory under the real name, so a crash never leaves a half-written index there."""
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    try:
        out_dir.rename(old)
    except FileNotFoundError:
        pass
    try:
        tmp.rename(out_dir)
    except OSError:  # another process swapped its own build in meanwhile: it is as good as ours
        if not (out_dir / MANIFEST).exists():
            raise
    shutil.rmtree(old, ignore_errors=True)


def _check_files(path: Path, m: Manifest) -> None:
    for name, size in m.files.items():
        f = path / name
        if not f.is_file():
            raise IndexDamagedError(path, f"lacks its file {name}")
        if f.stat().st_size != size:
            raise IndexDamagedError(path, f"has a {name} of {f.stat().st_size} bytes, not the {size} "
                                          "it was written with")


def load_index(path: Path, eid: EmbedderId, corpus: Corpus | None = None):
    """Load a persisted index after checking its manifest against the embedder (and corpus).

    Raises IndexMissingError (nothing there), IndexMismatchError (another embedder or corpus) or
    IndexDamagedError (files that cannot be this index).
    """
    apply_offline_env()
    from llama_index.core import StorageContext, load_index_from_storage
    from llama_index.vector_stores.faiss import FaissVectorStore

    if not (path / MANIFEST).exists():
        if path.is_dir() and any(path.iterdir()):
            raise IndexDamagedError(path, f"has no {MANIFEST}")
        raise IndexMissingError(f"No index at {path}. Build it with `distilrag index`.")
    m = read_manifest(path)
    check_manifest(m, eid, corpus, path)
    _check_files(path, m)
    try:
        store = FaissVectorStore.from_persist_dir(str(path))
        storage = StorageContext.from_defaults(vector_store=store, persist_dir=str(path))
        index = load_index_from_storage(storage, embed_model=llama_index_embedding(eid))
    except Exception as e:  # faiss, JSON and pydantic errors alike: the files are not a usable index
        raise IndexDamagedError(path, f"could not be loaded ({type(e).__name__}: {str(e)[:120]})") from e
    counts = {"FAISS vectors": store.client.ntotal, "stored passages": len(storage.docstore.docs),
              "index entries": len(getattr(index.index_struct, "nodes_dict", {}) or {})}
    expect = {"the manifest": m.n_passages, **({"the corpus": len(corpus)} if corpus is not None else {})}
    for what, n in counts.items():
        for where, want in expect.items():
            if n != want:
                raise IndexDamagedError(path, f"holds {n} {what} but {where} has {want} passages")
    return index


_LOADED: dict[tuple, object] = {}  # (dir, weights, corpus, its files' stats) -> the loaded index
_LOADED_MAX = 4


def _load_faiss(path: Path, eid: EmbedderId, corpus: Corpus):
    """load_index, once per index as it is on disk: the verdict and the harness build many
    pipelines over one index, and a large docstore takes seconds to parse. Any change to the
    files (a rebuild, damage) is a new key, so the checks run again."""
    try:
        files = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.iterdir()))
    except OSError:
        return load_index(path, eid, corpus)  # missing: its error says so
    key = (str(path), eid.weights_hash, corpus.hash, files)
    if key not in _LOADED:
        index = load_index(path, eid, corpus)
        while len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = index
    return _LOADED[key]


def get_index(corpus: Corpus, embedder: str = "base", index_type: str = "flat",
              rebuild: bool = False, progress: bool = True):
    """The index for (corpus, embedder): loaded when valid, built when missing or when asked.

    A damaged index, or one built for another corpus, is rebuilt with one warning on stderr.
    An index of other embedder weights raises IndexMismatchError unless `rebuild` is set:
    replacing a model's index is the caller's explicit choice.
    """
    eid = resolve_embedder(embedder, corpus)
    faiss = vector_store() == "faiss"
    path = index_dir(corpus, eid.label)
    if faiss:
        load = lambda: _load_faiss(path, eid, corpus)  # noqa: E731
    else:
        from rag.milvus_index import load_milvus_index

        load = lambda: load_milvus_index(corpus, eid)  # noqa: E731
    if not rebuild:
        try:
            return load()
        except IndexMissingError:
            if faiss and _adopt_legacy(corpus, eid, path):
                return get_index(corpus, embedder, index_type, progress=progress)
        except (IndexDamagedError, IndexCorpusMismatchError) as e:
            print(f"warning: the index at {index_location(corpus, eid)} {e.why}; rebuilding it.", file=sys.stderr)
    build_index(corpus, eid, index_type=index_type, out_dir=path if faiss else None, progress=progress)
    return load()


def _adopt_legacy(corpus: Corpus, eid: EmbedderId, path: Path) -> bool:
    """Move an index kept under the bare corpus name (before keys had a hash) into place, if it is this corpus's."""
    legacy = indexes_dir() / corpus.name / eid.label
    if legacy == path or not (legacy / MANIFEST).exists():
        return False
    try:
        if read_manifest(legacy).corpus_hash != corpus.hash:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        legacy.rename(path)
    except (OSError, IndexDamagedError):
        return False
    return True
