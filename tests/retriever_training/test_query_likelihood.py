"""Query likelihood with the real embedded GGUF: the KV-prefix path equals the naive path, and the
passage a question was written from scores higher than an unrelated one."""
import pytest

from rag.corpus import load_corpus


@pytest.mark.llm
def test_prefix_reuse_matches_naive_scores_and_prefers_the_source_passage():
    from rag.models import ensure_llm
    from retriever_training.query_likelihood import QLConfig, QueryLikelihoodScorer

    corpus = load_corpus("squad_dev")
    sb, other = corpus.by_id["Super_Bowl_50#0"], corpus.by_id["Warsaw#0"]
    qs = ["Which NFL team represented the AFC at Super Bowl 50?", "Where did Super Bowl 50 take place?"]
    scorer = QueryLikelihoodScorer(ensure_llm(), QLConfig(n_ctx=512, n_threads=1))
    shared = scorer.score_passage(sb.title, sb.text, qs)  # one decode, a KV sequence per query
    naive = [scorer.score_naive(sb.title, sb.text, q) for q in qs]
    alone = [scorer.score_passage(sb.title, sb.text, [q])[0] for q in qs]
    assert alone == pytest.approx(naive, abs=1e-6)  # the shared prefix changes nothing
    # batched rows round differently (~0.01-0.03 nats), but a neighbour never leaks into a query
    assert shared == pytest.approx(naive, abs=0.06)
    junk = scorer.score_passage(sb.title, sb.text, ["zebra quantum violin tax " * 6] * 3 + [qs[0]])[-1]
    assert junk == pytest.approx(naive[0], abs=0.06)
    assert all(-10 < s < 0 for s in shared)  # mean log-probabilities
    unrelated = scorer.score_passage(other.title, other.text, qs)
    assert all(a > b + 0.5 for a, b in zip(shared, unrelated))
