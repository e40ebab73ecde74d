"""Query likelihood over a farm of OpenAI-compatible servers (retriever_training/ql_farm.py),
against fake /v1/completions servers that echo prompt log-probs: the score is the mean over the
query's tokens, a 429 is retried, a server that dies hands its work to the others, nothing is paid
twice, and the labelling stage uses the farm through the same cache and ledger."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from retriever_training.ql_farm import FarmError, HTTPQLScorer, PassageWork
from retriever_training.query_likelihood import QLConfig


def token_logprob(tok: str) -> float:
    return -0.1 * len(tok.strip()) - 0.05


class EchoServer:
    """/v1/completions that tokenizes on spaces and gives each prompt token a known log-prob."""

    def __init__(self, fail_first: int = 0):
        self.prompts: list[str] = []
        self.fail_first = fail_first  # answer 429 this many times first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(429)
                    self.end_headers()
                    return
                prompt = body["prompt"]
                outer.prompts.append(prompt)
                import re

                toks = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+", prompt)]
                toks.append((len(prompt), " gen"))  # the one generated token (max_tokens=1)
                lps = [None] + [token_logprob(t) for _, t in toks[1:]]
                out = json.dumps({"choices": [{"text": prompt + " gen", "logprobs": {
                    "tokens": [t for _, t in toks], "text_offset": [o for o, _ in toks], "token_logprobs": lps}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(out.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def kill(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SpaceVocab:
    """tokenize/detokenize like llama_cpp.Llama's, on whitespace."""

    def tokenize(self, b: bytes, add_bos: bool = False, special: bool = False):
        import re

        return [m.group() for m in re.finditer(rb"\s*\S+", b)]

    def detokenize(self, toks):
        return b"".join(toks)


def expected(query: str, cfg: QLConfig = QLConfig()) -> float:
    import re

    toks = re.findall(r"\s*\S+", " " + query)[: cfg.max_query_tokens]
    return sum(token_logprob(t) for t in toks) / len(toks)


@pytest.fixture
def servers():
    made = [EchoServer(), EchoServer(fail_first=1)]
    yield made
    for s in made:
        try:
            s.kill()
        except Exception:
            pass


def work(n_passages: int = 6):
    return [PassageWork(f"p{i}", f"T{i}", f"passage number {i} text", [(f"q{i}a", "who won the game"),
                                                                      (f"q{i}b", f"what is item {i}")])
            for i in range(n_passages)]


def test_scores_are_the_query_tokens_mean_and_a_429_is_retried(servers):
    scorer = HTTPQLScorer([s.url for s in servers], tokenizer=SpaceVocab(), backoff_s=0.01, bos_text="")
    got = {}
    scorer.score_many(work(), lambda d, q, s, n: got.setdefault((d, q), s))
    assert len(got) == 12
    assert got[("p0", "q0a")] == pytest.approx(expected("who won the game"))
    assert got[("p3", "q3b")] == pytest.approx(expected("what is item 3"))
    prompts = servers[0].prompts + servers[1].prompts
    assert len(prompts) == 12 == len(set(prompts))  # each pair sent once (the 429 was not answered)
    assert servers[0].prompts and servers[1].prompts  # both servers worked
    # A passage's pairs stay on one server, back to back (its prefix cache holds the passage).
    for s in servers:
        passages = [p.split(" text")[0] for p in s.prompts]
        assert all(passages.count(p) == 2 for p in set(passages))


def test_a_dead_server_hands_its_work_to_the_others_and_none_is_paid_twice(servers):
    servers[1].kill()  # refuses connections from the start
    scorer = HTTPQLScorer([s.url for s in servers], tokenizer=SpaceVocab(), backoff_s=0.01, bos_text="")
    got = []
    scorer.score_many(work(), lambda d, q, s, n: got.append((d, q)))
    assert sorted(got) == sorted({(w.docid, q) for w in work() for q, _ in w.queries})
    assert len(servers[0].prompts) == 12 == len(set(servers[0].prompts))
    servers[0].kill()
    with pytest.raises(FarmError, match="no endpoint answers"):
        scorer.score_many(work(1), lambda *a: None)


def test_long_passages_are_cut_to_the_in_process_token_budget():
    cfg = QLConfig(n_ctx=40, max_query_tokens=8)
    scorer = HTTPQLScorer(["http://unused/v1"], cfg, tokenizer=SpaceVocab())
    prefix = scorer.prefix_text("T", " ".join(f"w{i}" for i in range(100)))
    from rag.prompts import QUERY_LIKELIHOOD

    assert prefix.endswith(QUERY_LIKELIHOOD.tail)
    assert len(SpaceVocab().tokenize(prefix.encode())) + 1 <= cfg.n_ctx - cfg.max_query_tokens - 8
    assert scorer.prefix_text("T", "short") == QUERY_LIKELIHOOD.template.format(title="T", text="short")


def test_labelling_runs_on_the_farm_through_the_cache_and_ledger(servers, tmp_path):
    from rag.corpus import Corpus
    from rag.llm_cache import LLMCache
    from rag.records import Candidate, CandidateList, Passage, read_jsonl
    from retriever_training.llm_rank import rank_candidates
    from retriever_training.ranking import LLMRankConfig

    corpus = Corpus("toy", [Passage(f"d{i}", f"passage {i} about thing {i}", f"T{i}") for i in range(4)])
    cands = [CandidateList(f"q{j}", f"what is thing {j}", "bm25",
                           [Candidate(f"d{i}", 1.0 - i / 10, i + 1) for i in range(4)]) for j in range(3)]
    cfg = LLMRankConfig(ql_backend="http", endpoints=tuple(s.url for s in servers), max_candidates=4)
    cache = LLMCache(tmp_path / "cache.sqlite")
    scorer = HTTPQLScorer(list(cfg.endpoints), tokenizer=SpaceVocab(), backoff_s=0.01, bos_text="")
    out = tmp_path / "rankings.jsonl"
    ledger = rank_candidates(cands, corpus, cfg, out, cache=cache, progress=False, scorer=scorer)
    rows = list(read_jsonl(out))
    assert [r["qid"] for r in sorted(rows, key=lambda r: r["qid"])] == ["q0", "q1", "q2"]
    assert ledger.calls == 12 and ledger.queries_done == 3 and ledger.model.endswith("/http")
    r0 = next(r for r in rows if r["qid"] == "q0")
    assert r0["scores"][0] == pytest.approx(expected("what is thing 0"))
    # A rerun pays nothing: every pair is in the cache.
    sent = len(servers[0].prompts) + len(servers[1].prompts)
    out.unlink()
    ledger = rank_candidates(cands, corpus, cfg, out, cache=cache, progress=False, scorer=scorer)
    assert ledger.calls == 0 and ledger.cache_hits == 12 and len(servers[0].prompts) + len(servers[1].prompts) == sent


def test_workers_load_the_vocabulary_once_between_them(monkeypatch):
    """Every server's worker needs the tokenizer at once on the first passages; llama.cpp's loader
    run from two threads together ended the process without a word."""
    import sys
    import time
    import types

    made, inside = [], []

    class Vocab:
        def __init__(self, **kw):
            inside.append(1)
            time.sleep(0.2)  # wide enough for a second thread to come in unguarded
            made.append(len(inside))
            inside.pop()

        def tokenize(self, text, add_bos=False, special=False):
            return text.split()

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=Vocab))
    monkeypatch.setattr("rag.models.ensure_llm", lambda: "model.gguf")
    scorer = HTTPQLScorer(["http://a/v1", "http://b/v1"], bos_text="")
    threads = [threading.Thread(target=scorer.prefix_text, args=("T", f"text {i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [1]  # one load, never two at once
