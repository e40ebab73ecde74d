"""Dense search at scale: 1M synthetic 384-d passage vectors in each index the product can build.

    python benchmarks/bench_scale.py [--n 1000000] [--queries 500] [--engines flat,ivf,hnsw,milvus]
                                     [--milvus-uri http://host:19530]

For each engine, in its own process (so that peak memory is its own): build time, peak resident
memory, recall@10 against exact inner-product search, and p50/p95 latency of one query at a time
(top 10). The indexes are the product's: rag.index.faiss_index (what `--index-type flat|ivf|hnsw`
builds, with its nlist/nprobe/efSearch) and rag.milvus_index.build_milvus_index through
LlamaIndex's Milvus store on the embedded engine (milvus-lite; what `--vector-store milvus` does),
queried through that store; with --milvus-uri the same code on a Milvus server (its AUTOINDEX;
peak memory is then the client's only, and the collection is dropped afterwards). Targets (2 cores): IVF or HNSW in <= 24 GiB with recall@10 >= 0.95
and p50 <= 20 ms.

The vectors are clustered like sentence embeddings (a few thousand topic centres plus noise,
normalised), not uniform noise, on which every approximate index is at its worst; queries are new
draws around the same centres. Prints one JSON line per engine.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM, TOP = 384, 10


def vectors(n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 250), DIM)).astype(np.float32)

    def draw(k: int) -> np.ndarray:
        out = np.empty((k, DIM), dtype=np.float32)
        for i in range(0, k, 100_000):  # in blocks: the noise of 1M rows at once doubles peak memory
            m = min(100_000, k - i)
            block = centres[rng.integers(0, len(centres), m)] + 0.6 * rng.standard_normal((m, DIM), dtype=np.float32)
            out[i:i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out
    return draw(n), draw(queries)


def exact_top(corpus: np.ndarray, queries: np.ndarray, block: int = 100_000) -> np.ndarray:
    """The true top 10 by inner product, blockwise (a second copy of the corpus in a flat index
    would count against the engine's peak memory)."""
    best_s = np.full((len(queries), TOP), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), TOP), dtype=np.int64)
    for start in range(0, len(corpus), block):
        s = queries @ corpus[start:start + block].T
        part = np.argpartition(-s, TOP, axis=1)[:, :TOP]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(-cand_s, axis=1)[:, :TOP]
        best_s, best_i = np.take_along_axis(cand_s, keep, axis=1), np.take_along_axis(cand_i, keep, axis=1)
    return best_i


def latency_and_recall(search, queries: np.ndarray, truth: np.ndarray) -> dict:
    times, hits = [], 0
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        got = search(q)
        times.append(time.perf_counter() - t0)
        hits += len(set(got) & set(t.tolist()))
    ms = np.array(times) * 1000
    return {"recall@10": round(hits / (TOP * len(queries)), 4), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def run_faiss(kind: str, corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    from rag.index import faiss_index

    t0 = time.perf_counter()
    index = faiss_index(corpus, kind)
    index.add(corpus)
    build = time.perf_counter() - t0
    return {"build_s": round(build, 1), **latency_and_recall(lambda q: index.search(q[None, :], TOP)[1][0].tolist(),
                                                              queries, truth)}


def run_milvus(corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray, server_uri: str = "") -> dict:
    from llama_index.core.vector_stores import VectorStoreQuery

    from rag.corpus import Corpus
    from rag.embedder import EmbedderId
    from rag.milvus_index import _store, build_milvus_index, collection_name
    from rag.records import Passage

    synthetic = Corpus("synthetic", [Passage(str(i), "") for i in range(len(corpus))])
    eid = EmbedderId("synthetic", "", "0" * 64)
    with tempfile.TemporaryDirectory() as tmp:
        uri = server_uri or str(Path(tmp) / "milvus.db")
        t0 = time.perf_counter()
        build_milvus_index(synthetic, eid, corpus, t0, uri=uri)
        build = time.perf_counter() - t0
        name = collection_name(synthetic, eid.label)
        store = _store(uri, name, DIM)
        store.client.load_collection(name)  # as rag.milvus_index.load_milvus_index does before searching

        def search(q):
            res = store.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=TOP))
            return [int(i) for i in res.ids]
        try:
            return {"build_s": round(build, 1), **latency_and_recall(search, queries, truth),
                    **({"server": True} if server_uri else {})}
        finally:
            if server_uri:
                store.client.drop_collection(name)


def one_engine(engine: str, n: int, n_queries: int, milvus_uri: str = "") -> dict:
    from rag.settings import set_torch_threads

    set_torch_threads()
    corpus, queries = vectors(n, n_queries)
    truth = exact_top(corpus, queries)
    out = run_milvus(corpus, queries, truth, milvus_uri) if engine == "milvus" else run_faiss(engine, corpus, queries, truth)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    return {"engine": engine, "n": n, "queries": n_queries, "dim": DIM, **out, "peak_rss_gib": round(peak_gib, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--engines", default="flat,ivf,hnsw,milvus")
    ap.add_argument("--milvus-uri", default="", help="a Milvus server instead of the embedded engine")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: this engine only
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_engine(a.one, a.n, a.queries, a.milvus_uri)), flush=True)
        return
    for engine in a.engines.split(","):
        subprocess.run([sys.executable, __file__, "--one", engine, "--n", str(a.n), "--queries", str(a.queries),
                        "--milvus-uri", a.milvus_uri], check=False)


if __name__ == "__main__":
    main()
