"""The dense index in Milvus through LlamaIndex's Milvus store, on both real engines: the embedded
one (milvus-lite, a file) and a Milvus server by URI (the standalone server of the `milvus`
package, started here): built, queried like FAISS, a mismatched embedder refused with the FAISS
message, a damaged or outdated collection rebuilt; the app's index status reads it too. Real MiniLM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.corpus import Corpus
from rag.records import Passage

pytest.importorskip("llama_index.vector_stores.milvus", reason="pip install llama-index-vector-stores-milvus milvus-lite")

PASSAGES = [Passage("sb", "Super Bowl 50 was played at Levi's Stadium in Santa Clara.", "Super Bowl 50"),
            Passage("ox", "Oxygen is a chemical element with atomic number 8.", "Oxygen"),
            Passage("ch", "Chloroplasts conduct photosynthesis in plant cells.", "Chloroplast"),
            Passage("nl", "The Nile flows north into the Mediterranean Sea.", "Nile")]
QUERIES = {"Where was Super Bowl 50 played?": "sb", "What is the atomic number of oxygen?": "ox",
           "What do chloroplasts do?": "ch", "Which sea does the Nile flow into?": "nl"}


SERVER_PORTS = ("proxy", "etcd", "proxy-internal", "root-coord", "query-coord", "query-node", "index-coord",
                "index-node", "data-coord", "data-node")


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A Milvus standalone server on free loopback ports (none of a Milvus the machine may run)."""
    from pymilvus import MilvusClient

    from rag.llm import free_port

    exe = Path(sys.executable).parent / "milvus-server"
    assert exe.exists(), "the Milvus server comes with the dev extra: pip install -e '.[all]'"
    data = tmp_path_factory.mktemp("milvus-server")
    ports = {name: free_port() for name in SERVER_PORTS}  # (its embedded etcd's peer port stays 2380)
    with open(data / "server.log", "wb") as log:
        proc = subprocess.Popen([str(exe), "--data", str(data / "data"),
                                 *(a for name, port in ports.items() for a in (f"--{name}-port", str(port)))],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{ports['proxy']}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"milvus-server exited: {(data / 'server.log').read_text()[-2000:]}"
            try:
                MilvusClient(uri=uri, timeout=5).list_collections()
                break
            except Exception:
                assert time.monotonic() < deadline, "milvus-server did not answer within 240 s"
                time.sleep(2)
        yield uri
    finally:  # the server is the wrapper's child: end the whole session, as the package's stop() does
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        for _ in range(50):
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def milvus(request, tmp_path, monkeypatch):
    server = request.param == "server"
    uri = request.getfixturevalue("milvus_server") if server else str(tmp_path / "vectors" / "milvus.db")
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DISTILRAG_VECTOR_STORE", "milvus")
    monkeypatch.setenv("DISTILRAG_MILVUS_URI", uri)
    yield tmp_path
    if server:  # the server outlives the test: leave it empty for the next
        from pymilvus import MilvusClient

        client = MilvusClient(uri=uri)
        for name in client.list_collections():
            client.drop_collection(name)


def _ranked(index, q):
    return [n.node.node_id for n in index.as_retriever(similarity_top_k=4).retrieve(q)]


def _client():
    from rag.milvus_index import _client, milvus_uri

    return _client(milvus_uri())


def _count(name):
    return _client().query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]


def test_milvus_index_retrieves_like_faiss_and_keeps_its_manifest(milvus, monkeypatch):
    from rag.embedder import resolve_embedder
    from rag.index import get_index, stored_manifest
    from rag.milvus_index import collection_name

    corpus = Corpus("tiny", PASSAGES)
    index = get_index(corpus, "base", progress=False)
    got = {q: _ranked(index, q) for q in QUERIES}
    assert {q: r[0] for q, r in got.items()} == QUERIES
    node = index.as_retriever(similarity_top_k=1).retrieve("oxygen")[0].node
    assert node.node_id == "ox" and "atomic number 8" in node.get_content() and node.metadata["title"] == "Oxygen"
    eid = resolve_embedder("base", corpus)
    m = stored_manifest(corpus, eid)
    assert m.embedder_hash == eid.weights_hash and m.n_passages == 4 and m.index_type == "milvus"
    assert _count(collection_name(corpus, "base")) == 4
    # The same order as FAISS over the same vectors.
    monkeypatch.setenv("DISTILRAG_VECTOR_STORE", "faiss")
    faiss_index = get_index(corpus, "base", progress=False)
    assert {q: _ranked(faiss_index, q) for q in QUERIES} == got


def test_a_collection_of_other_weights_is_refused_with_the_faiss_message(milvus):
    from rag.index import IndexMismatchError, get_index
    from rag.milvus_index import MANIFEST_PROPERTY, collection_name

    corpus = Corpus("tiny", PASSAGES)
    get_index(corpus, "base", progress=False)
    name, client = collection_name(corpus, "base"), _client()
    m = json.loads(client.describe_collection(name)["properties"][MANIFEST_PROPERTY])
    client.alter_collection_properties(name, properties={MANIFEST_PROPERTY: json.dumps({**m, "embedder_hash": "f" * 64})})
    with pytest.raises(IndexMismatchError, match=r"was built with embedder 'base'.*Rebuild it: `distilrag index"):
        get_index(corpus, "base", progress=False)
    index = get_index(corpus, "base", rebuild=True, progress=False)  # the caller's explicit choice
    assert _ranked(index, "oxygen")[0] == "ox"


def test_a_damaged_or_outdated_collection_is_rebuilt_with_one_warning(milvus, capsys):
    from rag.index import get_index
    from rag.milvus_index import collection_name

    corpus = Corpus("tiny", PASSAGES)
    get_index(corpus, "base", progress=False)
    name, client = collection_name(corpus, "base"), _client()
    client.delete(name, filter='id in ["ox"]')  # rows lost: the count no longer matches
    client.flush(name)
    index = get_index(corpus, "base", progress=False)
    assert "holds 3 vectors" in capsys.readouterr().err and _ranked(index, "oxygen")[0] == "ox"
    # A new version of the corpus (same name) has its own collection: never the old vectors.
    grown = Corpus("tiny", PASSAGES + [Passage("am", "The Amazon rainforest covers the Amazon basin.", "Amazon")])
    index = get_index(grown, "base", progress=False)
    assert _ranked(index, "Amazon rainforest")[0] == "am"
    assert collection_name(grown, "base") != name and _count(collection_name(grown, "base")) == 5


def test_app_index_status_and_cli_read_the_collection(milvus, capsys):
    from app import services
    from app.cli import main
    from rag.records import write_jsonl

    write_jsonl(milvus / "tiny.jsonl", [{"_id": p.docid, "title": p.title, "text": p.text} for p in PASSAGES])
    from rag.corpus import load_corpus

    corpus = load_corpus(str(milvus / "tiny.jsonl"))
    assert services.index_state(corpus, "base").status == "missing"
    assert main(["index", "--corpus", str(milvus / "tiny.jsonl"), "--embedder", "base"]) == 0
    out = capsys.readouterr().out
    assert "Milvus collection distilrag_" in out and "4 passages, milvus" in out
    state = services.index_state(corpus, "base")
    assert state.status == "ready" and state.n_passages == 4


def test_a_milvus_server_is_asked_for_its_ann_index_and_the_embedded_engine_is_not(monkeypatch, tmp_path):
    """LlamaIndex's store would create a FLAT (exhaustive) index on a server too: a million
    passages would then be searched one by one."""
    import llama_index.vector_stores.milvus as lim

    from rag import milvus_index

    seen = []
    monkeypatch.setattr(lim, "MilvusVectorStore", lambda **kw: seen.append(kw) or kw)
    milvus_index._store("http://milvus:19530", "c", 384, overwrite=True)
    milvus_index._store(str(tmp_path / "milvus.db"), "c", 384, overwrite=True)
    assert seen[0]["index_config"] == {"index_type": "AUTOINDEX"}
    assert not seen[1]["index_config"]
