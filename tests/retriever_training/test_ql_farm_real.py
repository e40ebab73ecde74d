"""The query-likelihood farm against two real llama-cpp-python servers of the embedded GGUF: the
same scores as the in-process scorer on the same tokens, and a server killed with SIGKILL mid-run
leaves its work to the other, nothing paid twice. Slow (llama-cpp-python's server computes echoed
log-probs in Python; docs/scale.md has the rate): run with -m slow."""
from __future__ import annotations

import os
import signal

import pytest

pytestmark = [pytest.mark.llm, pytest.mark.slow]
TITLE = "Super Bowl 50"
TEXT = ("Super Bowl 50 was an American football game to determine the champion of the National Football "
        "League for the 2015 season. The Denver Broncos defeated the Carolina Panthers 24-10.")


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    from rag.llm import free_port, spawn_server
    from rag.models import ensure_llm

    gguf = str(ensure_llm())
    log = tmp_path_factory.mktemp("farm") / "servers.log"
    procs = []
    for _ in range(2):  # one thread each, as on a 2-core farm; detached: a SIGKILL of its group ends it
        port = free_port()  # taken by the server before the next one is asked for
        procs.append((spawn_server(gguf, port, 1, 1024, log, detach=True, logits=True), f"http://127.0.0.1:{port}/v1"))
    yield gguf, procs
    for p, _ in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_farm_scores_equal_the_in_process_scorer_and_survive_a_killed_server(farm):
    from retriever_training.ql_farm import HTTPQLScorer, PassageWork
    from retriever_training.query_likelihood import QLConfig, QueryLikelihoodScorer

    gguf, procs = farm
    queries = [("a", "Which team won Super Bowl 50?"), ("b", "What is the capital of France?")]
    scorer = HTTPQLScorer([u for _, u in procs])
    got = {}
    scorer.score_many([PassageWork("p", TITLE, TEXT, queries)], lambda d, q, s, n: got.setdefault(q, s))

    class WithBOS(QueryLikelihoodScorer):  # the farm sends the BOS token first (see ql_farm)
        def prefix_tokens(self, title, text):
            return [self.token_bos()] + super().prefix_tokens(title, text)

    ref = WithBOS(gguf, QLConfig(n_threads=1)).score_passage(TITLE, TEXT, [q for _, q in queries])
    for (qid, _), want in zip(queries, ref):
        # llama.cpp's quantized kernels round differently for one prompt batch (the server) than for
        # a prefix batch plus a query batch (in-process): measured differences .003-.033 nats/token.
        assert got[qid] == pytest.approx(want, abs=0.05), (qid, got[qid], want)
    assert got["a"] > got["b"]  # the passage answers the first query

    # SIGKILL one server as soon as the first pair is in: the other one finishes the rest.
    work = [PassageWork(f"p{i}", TITLE, TEXT, [(f"q{i}", f"Who played in Super Bowl 50, part {i}?")]) for i in range(3)]
    done = []

    def on_pair(docid, qid, score, tokens):
        done.append(qid)
        if len(done) == 1:
            os.killpg(procs[1][0].pid, signal.SIGKILL)

    scorer = HTTPQLScorer([u for _, u in procs], backoff_s=0.2)
    scorer.score_many(work, on_pair)
    assert sorted(done) == ["q0", "q1", "q2"]  # every pair once: none lost, none paid twice
