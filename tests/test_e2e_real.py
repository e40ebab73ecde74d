"""The real path, end to end: real MiniLM, real FAISS index over a slice of the shipped corpus,
the real embedded LLM behind its local OpenAI-compatible server, a cited answer."""
import time
from pathlib import Path

import pytest

from rag.corpus import Corpus, load_corpus


@pytest.fixture(scope="module")
def super_bowl_slice():
    full = load_corpus("squad_dev")
    return Corpus("sb50_slice", [p for p in full.passages if p.source == "Super_Bowl_50"][:12])


@pytest.mark.llm
def test_real_chain_answers_and_cites_the_supporting_passage(super_bowl_slice):
    from rag.chain import build_chain
    from rag.index import index_dir, read_manifest

    chain = build_chain(super_bowl_slice, retriever="base", top_k=3)
    m = read_manifest(index_dir(super_bowl_slice, "base"))
    assert m.n_passages == 12 and m.dim == 384 and m.corpus_hash == super_bowl_slice.hash
    streamed = []
    ans = chain.answer("Where did Super Bowl 50 take place?", on_token=streamed.append)
    assert "Levi's Stadium" in ans.text
    assert len(streamed) > 1 and ans.timings["first_token_s"] <= ans.timings["total_s"]
    assert ans.cited, f"no [n] citation in {ans.text!r}"
    cited_texts = [s.text for s in ans.sources if s.n in ans.cited]
    assert any("Levi's Stadium" in t for t in cited_texts)  # the citation points at supporting text
    assert "Super_Bowl_50#0" in ans.retrieved_docids
    # Nothing in the passages answers this: the chain must say so rather than answer from memory.
    assert chain.answer("What is the capital of Mongolia?").is_no_answer


def test_index_refuses_another_embedder_naming_both(super_bowl_slice, tmp_path):
    from dataclasses import replace

    from rag.embedder import resolve_embedder
    from rag.index import IndexMismatchError, build_index, load_index

    path = build_index(super_bowl_slice, "base", out_dir=tmp_path / "idx", progress=False)
    base = resolve_embedder("base")
    other = replace(base, label="my-model", path="/models/my-model", weights_hash="f" * 64)
    with pytest.raises(IndexMismatchError) as e:
        load_index(path, other, super_bowl_slice)
    msg = str(e.value)
    assert "'base'" in msg and "'my-model'" in msg and "--rebuild" in msg
    changed = Corpus("sb50_slice", super_bowl_slice.passages[:-1])
    with pytest.raises(IndexMismatchError, match="another version of corpus"):
        load_index(path, base, changed)
    # the matching embedder loads, and retrieval goes through LlamaIndex's retriever interface
    index = load_index(path, base, super_bowl_slice)
    nodes = index.as_retriever(similarity_top_k=2).retrieve("Who won Super Bowl 50?")
    assert len(nodes) == 2 and all(n.node.node_id.startswith("Super_Bowl_50#") for n in nodes)


def test_ivf_and_hnsw_indexes_agree_with_flat_on_top1(super_bowl_slice, tmp_path):
    from rag.embedder import resolve_embedder
    from rag.index import build_index, load_index

    base = resolve_embedder("base")
    tops = {}
    for kind in ("flat", "hnsw", "ivf"):
        path = build_index(super_bowl_slice, base, index_type=kind, out_dir=tmp_path / kind, progress=False)
        r = load_index(path, base, super_bowl_slice).as_retriever(similarity_top_k=1)
        tops[kind] = r.retrieve("Where was Super Bowl 50 played?")[0].node.node_id
    assert tops["hnsw"] == tops["flat"] == tops["ivf"]


def test_bm25_and_hybrid_retrievers(super_bowl_slice):
    from rag.retrievers import make_retriever

    bm25 = make_retriever("bm25", super_bowl_slice, top_k=3)
    hits = bm25.retrieve("Levi's Stadium Santa Clara")
    assert len(hits) == 3 and hits[0].node.node_id == "Super_Bowl_50#0"
    hybrid = make_retriever("hybrid", super_bowl_slice, top_k=4)
    ids = [n.node.node_id for n in hybrid.retrieve("Which NFL team represented the AFC at Super Bowl 50?")]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_weighted_hybrid_ends_at_bm25s_order_and_the_dense_one(super_bowl_slice):
    """LlamaIndex's relative-score fusion with the dense weight at 0 keeps BM25's head, at 1 the
    dense one's; in between it mixes them (what the verdict's fitted weight chooses from)."""
    from rag.retrievers import make_retriever

    q = "Which NFL team represented the AFC at Super Bowl 50?"

    def top(spec, k=3):
        return [n.node.node_id for n in make_retriever(spec, super_bowl_slice, top_k=k).retrieve(q)]

    assert top("hybrid@0") == top("bm25") and top("hybrid@1") == top("base")
    assert top("hybrid@0") != top("hybrid@1")  # else this query cannot tell the ends apart
    assert set(top("hybrid@0.5", 6)) <= set(top("bm25", 50)) | set(top("base", 50))


@pytest.mark.llm
def test_embedded_server_ignores_the_hosts_environment(monkeypatch):
    """PORT (the app's own port), HOST=0.0.0.0, API_KEY and CONFIG_FILE in the shell: the server
    still starts on a free loopback port, answers without a key and listens on 127.0.0.1 only."""
    import socket

    from rag import llm

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    for k, v in {"PORT": str(busy.getsockname()[1]), "HOST": "0.0.0.0", "API_KEY": "x",
                 "CONFIG_FILE": "/nonexistent.json"}.items():
        monkeypatch.setenv(k, v)
    if (old := llm.running_server()) is not None:
        old.stop()
    monkeypatch.setattr(llm, "_server", None)
    server = llm.start_local_server(llm.LLMConfig(), wait_s=240)
    try:
        assert server.port != busy.getsockname()[1]
        client = llm.openai_client(llm.LLMConfig())
        out = client.chat.completions.create(model=llm.LOCAL_ALIAS, max_tokens=4,
                                             messages=[{"role": "user", "content": "Say OK."}])
        assert out.choices[0].message.content is not None  # no 401: API_KEY did not reach it
        listening = {line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A"}  # state LISTEN
        assert f"0100007F:{server.port:04X}" in listening  # 127.0.0.1, not 0.0.0.0
        assert f"00000000:{server.port:04X}" not in listening
    finally:
        server.stop()
        busy.close()


@pytest.mark.llm
def test_a_busy_embedded_server_is_found_and_its_answer_is_not_cut(monkeypatch):
    """While an answer streams, a second client finds the same server at once (an HTTP probe would
    wait for the answer, time out and start a second server), and a request arriving meanwhile
    queues instead of ending the stream early (llama-cpp-python's default cuts it)."""
    import threading
    import urllib.request

    from rag import llm

    server = llm.start_local_server(llm.LLMConfig(), wait_s=240)
    client = llm.openai_client(llm.LLMConfig())
    stream = client.chat.completions.create(
        model=llm.LOCAL_ALIAS, max_tokens=24, temperature=0.0, stream=True,
        messages=[{"role": "user", "content": "Count from 1 to 40, separated by commas."}])
    chunks = [next(stream)]  # the server is busy with this answer now
    monkeypatch.setattr(llm, "_server", None)  # as another process sees it: through the state file
    t0 = time.monotonic()
    found = llm.running_server()
    took = time.monotonic() - t0
    probe = threading.Thread(target=lambda: urllib.request.urlopen(f"{server.base_url}/models",
                                                                   timeout=120).read())
    probe.start()
    chunks += list(stream)
    probe.join()
    assert found is not None and found.port == server.port and took < 1.5
    assert chunks[-1].choices[0].finish_reason == "length"  # ran to max_tokens: not cut short


@pytest.mark.llm
def test_the_answering_server_keeps_no_logits_and_a_logprob_user_gets_its_own(monkeypatch):
    """The embedded server answers without every position's logits (its prompts read faster, in
    less memory), so it returns no token log-probs; pointwise labelling, which needs them, starts
    a server of its own beside it and leaves the shared one to the chat."""
    import openai

    from rag import llm

    if (old := llm.running_server()) is not None:
        old.stop()
    monkeypatch.setattr(llm, "_server", None)
    shared = llm.start_local_server(llm.LLMConfig(), wait_s=240)
    try:
        ask = dict(model=llm.LOCAL_ALIAS, max_tokens=1, logprobs=True, top_logprobs=3,
                   messages=[{"role": "user", "content": "Answer Yes or No: is water wet?"}])
        with pytest.raises(openai.APIError):
            llm.openai_client(llm.LLMConfig()).chat.completions.create(**ask)
        monkeypatch.setattr(llm, "_server", None)  # as a labelling process sees it
        own = llm.start_local_server(llm.LLMConfig(logprobs=True), wait_s=240)
        try:
            assert own.port != shared.port and own.owned and own.logprobs
            assert llm.running_server().port == own.port
            out = llm.openai_client(llm.LLMConfig(logprobs=True)).chat.completions.create(**ask)
            assert out.choices[0].logprobs.content[0].top_logprobs
            monkeypatch.setattr(llm, "_server", None)
            assert llm.running_server().port == shared.port  # the state file still names the shared one
        finally:
            own.stop()
        assert llm.running_server().port == shared.port
    finally:
        shared.stop()
