"""The dense index in Milvus instead of FAISS, through LlamaIndex's Milvus vector store.

    DISTILRAG_VECTOR_STORE=milvus distilrag index --corpus squad_dev --embedder base
    distilrag index --vector-store milvus --milvus-uri http://milvus:19530 ...   (a server or cluster)

The URI is a local file for the embedded engine (milvus-lite; the default is <home>/milvus.db) or
a Milvus server's address; `DISTILRAG_MILVUS_TOKEN` holds a server's credentials (never printed).
One collection per (corpus, embedder), named from rag.index_manifest.index_key and the embedder label. The
manifest FAISS indexes keep in a file (rag.index_manifest.Manifest) is the collection's property
"distilrag_manifest", checked the same way: an index of other embedder weights is refused with
the same message, one of another corpus version or with a wrong row count is rebuilt. A build
goes into a temporary collection that is renamed into place, so readers never see half of one.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path

from rag.corpus import Corpus, passage_node
from rag.embedder import EmbedderId, llama_index_embedding
from rag.settings import apply_offline_env, home

MANIFEST_PROPERTY = "distilrag_manifest"
TOKEN_ENV = "DISTILRAG_MILVUS_TOKEN"
INSERT_BATCH = 2000  # rows per insert call: bounded gRPC messages for any corpus size


def milvus_uri() -> str:
    return os.environ.get("DISTILRAG_MILVUS_URI") or str(home() / "milvus.db")


def _embedded(uri: str) -> bool:
    """A local file (milvus-lite), not a server's address."""
    return "://" not in uri


def where(uri: str, collection: str) -> str:
    """How messages name an index: the URI without credentials, and the collection."""
    from rag.errors import public_endpoint

    shown = uri if _embedded(uri) else public_endpoint(uri)
    return f"{shown} (Milvus collection {collection})"


def collection_name(corpus: Corpus, embedder_label: str) -> str:
    """Milvus names allow letters, digits and underscores only, starting with a letter."""
    from rag.index_manifest import index_key

    return "distilrag_" + re.sub(r"\W", "_", f"{index_key(corpus)}__{embedder_label}")[:200]


def _client(uri: str):
    try:
        from pymilvus import MilvusClient
    except ImportError as e:  # pragma: no cover - install hint
        raise ImportError("The Milvus store needs `pip install llama-index-vector-stores-milvus milvus-lite`.") from e
    if _embedded(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))


def _store(uri: str, collection: str, dim: int, overwrite: bool = False, properties: dict | None = None):
    from llama_index.vector_stores.milvus import MilvusVectorStore

    # LlamaIndex's store asks for a FLAT (exhaustive) index unless told otherwise: a server picks its
    # own ANN index (AUTOINDEX); milvus-lite searches exhaustively whatever it is asked (docs/scale.md).
    index_config = None if _embedded(uri) else {"index_type": "AUTOINDEX"}
    # The sync client only: the chat calls it from Streamlit's script threads, which have no event loop.
    return MilvusVectorStore(uri=uri, token=os.environ.get(TOKEN_ENV, ""), collection_name=collection, dim=dim,
                             overwrite=overwrite, similarity_metric="IP", collection_properties=properties,
                             index_config=index_config, use_async_client=False)


def build_milvus_index(corpus: Corpus, eid: EmbedderId, vectors, build_t0: float, uri: str | None = None) -> str:
    """Insert the normalised `vectors` (rag.index.encode_passages) with their passages; returns
    where the index is."""
    from rag.index_manifest import Manifest

    uri = uri or milvus_uri()
    name = collection_name(corpus, eid.label)
    tmp = f"{name}_building_{os.getpid()}"
    manifest = Manifest(corpus=corpus.name, corpus_hash=corpus.hash, n_passages=len(corpus),
                        chunking=corpus.chunking, embedder_label=eid.label, embedder_path=eid.path,
                        embedder_hash=eid.weights_hash, dim=int(vectors.shape[1]), index_type="milvus",
                        built_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    store = _store(uri, tmp, manifest.dim, overwrite=True)
    for i in range(0, len(corpus.passages), INSERT_BATCH):  # nodes made per batch: all at once held >20 GiB at 1M
        store.add([passage_node(p, v.tolist()) for p, v in zip(corpus.passages[i:i + INSERT_BATCH],
                                                                 vectors[i:i + INSERT_BATCH])])
    client = store.client
    client.flush(tmp)
    manifest = Manifest(**{**asdict(manifest), "build_seconds": round(time.perf_counter() - build_t0, 2)})
    client.alter_collection_properties(tmp, properties={MANIFEST_PROPERTY: json.dumps(asdict(manifest))})
    if client.has_collection(name):
        client.drop_collection(name)
    client.rename_collection(tmp, name)
    return where(uri, name)


def milvus_manifest(corpus: Corpus, eid: EmbedderId, uri: str | None = None, client=None):
    """The collection's Manifest; None when there is no collection, IndexDamagedError when its
    property is missing or unreadable."""
    from rag.index_manifest import IndexDamagedError, manifest_from_dict

    uri = uri or milvus_uri()
    name = collection_name(corpus, eid.label)
    client = client or _client(uri)
    if not client.has_collection(name):
        return None
    raw = (client.describe_collection(name).get("properties") or {}).get(MANIFEST_PROPERTY)
    try:
        d = json.loads(raw)
    except (TypeError, ValueError) as e:
        raise IndexDamagedError(where(uri, name), f"has no readable {MANIFEST_PROPERTY} property "
                                                  f"({type(e).__name__})") from None
    return manifest_from_dict(d, where(uri, name), f"{MANIFEST_PROPERTY} property")


def load_milvus_index(corpus: Corpus, eid: EmbedderId, uri: str | None = None):
    """The collection's VectorStoreIndex after the manifest checks rag.index.load_index makes for FAISS."""
    apply_offline_env()
    from llama_index.core import VectorStoreIndex

    from rag.index_manifest import IndexDamagedError, IndexMissingError, check_manifest

    uri = uri or milvus_uri()
    name = collection_name(corpus, eid.label)
    at = where(uri, name)
    client = _client(uri)
    m = milvus_manifest(corpus, eid, uri, client)
    if m is None:
        raise IndexMissingError(f"No index at {at}. Build it with `distilrag index --vector-store milvus`.")
    check_manifest(m, eid, corpus, at)
    client.load_collection(name)
    # count(*) and not the collection stats: a server counts deleted rows there until compaction.
    rows = int(client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"])
    if rows != m.n_passages or rows != len(corpus):
        raise IndexDamagedError(at, f"holds {rows} vectors but the manifest has {m.n_passages} and the corpus "
                                    f"{len(corpus)} passages")
    return VectorStoreIndex.from_vector_store(_store(uri, name, m.dim), embed_model=llama_index_embedding(eid))
