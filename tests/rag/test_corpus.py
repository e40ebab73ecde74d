"""Corpus loading: the shipped corpus and its split, BEIR JSONL, and folders with bad files."""
import gzip
import json

import pytest

from rag.corpus import CorpusError, check_document, load_corpus, load_qrels, load_queries
from rag.settings import CORPORA_DIR
from tests.fakes import minimal_pdf


def test_shipped_corpus_counts_and_split_integrity():
    corpus = load_corpus("squad_dev")
    assert len(corpus) == 2067 and len(corpus.by_id) == 2067
    queries = load_queries("squad_dev")
    assert len(queries) == 10565
    qrels = load_qrels("squad_dev")
    split = json.loads((CORPORA_DIR / "squad_dev" / "split.json").read_text())["articles"]
    article_split = {}
    for q in queries:
        (docid,) = qrels[q.qid]
        article = docid.split("#")[0]
        assert split[article] == q.split  # each question sits in its article's split
        article_split.setdefault(article, set()).add(q.split)
    assert all(len(s) == 1 for s in article_split.values())  # no article in two splits
    counts = {s: sum(q.split == s for q in queries) for s in ("train", "dev", "test")}
    assert counts["train"] >= 1000 and counts["test"] >= 2000 and counts["dev"] > 0
    assert all(q.answers for q in queries)


def test_shipped_files_match_provenance():
    import hashlib

    text = (CORPORA_DIR / "squad_dev" / "PROVENANCE.md").read_text()
    for name in ("corpus.jsonl.gz", "queries.jsonl.gz", "qrels.tsv"):
        digest = hashlib.sha256((CORPORA_DIR / "squad_dev" / name).read_bytes()).hexdigest()
        assert digest in text, f"{name} changed without its provenance"


def test_beir_jsonl(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"_id": "a", "title": "T", "text": "hello"}) + "\n"
                 + json.dumps({"_id": "b", "text": "   "}) + "\n")
    c = load_corpus(p)
    assert [x.docid for x in c.passages] == ["a"] and c.passages[0].title == "T"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"title": "no id"}) + "\n")
    with pytest.raises(CorpusError, match="_id.*it has title"):
        load_corpus(bad)


def test_jsonl_field_names_of_other_exports_and_repeated_ids(tmp_path):
    p = tmp_path / "pyserini.jsonl"
    p.write_text(json.dumps({"id": 7, "contents": "Basel lies on the Rhine."}) + "\n"
                 + json.dumps({"id": "8", "text": "Warsaw is in Poland.", "contents": "ignored"}) + "\n")
    c = load_corpus(p)
    assert [(x.docid, x.text) for x in c.passages] == [("7", "Basel lies on the Rhine."), ("8", "Warsaw is in Poland.")]
    dup = tmp_path / "dup.jsonl"
    dup.write_text("".join(json.dumps({"_id": i, "text": "t"}) + "\n" for i in ("a", "b", "a")))
    with pytest.raises(CorpusError, match="records 1 and 3 share the id 'a'"):
        load_corpus(dup)


def test_folder_skips_bad_files_and_keeps_the_rest(tmp_path):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "good.txt").write_text("The Rhine flows through Basel. " * 20)
    (d / "sub" / "notes.md").write_text("# Notes\n\nOxygen is element eight.")
    (d / "page.html").write_text("<html><body><p>Warsaw is the capital of Poland.</p></body></html>")
    (d / "empty.txt").write_text("")
    (d / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (d / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (d / "fake.pdf").write_text("not a pdf")
    (d / "report.pdf").write_bytes(minimal_pdf(["The Danube flows through Vienna.", "It ends in the Black Sea."]))
    (d / "image.png").write_bytes(b"\x89PNG")
    c = load_corpus(d)
    sources = {p.source for p in c.passages}
    assert sources == {"good.txt", "sub/notes.md", "page.html", "report.pdf"}
    pdf_text = " ".join(p.text for p in c.passages if p.source == "report.pdf")
    assert "Danube flows through Vienna" in pdf_text and "Black Sea" in pdf_text  # the PDF's text layer
    skipped = dict(c.skipped)
    assert set(skipped) == {"empty.txt", "binary.txt", "latin1.txt", "fake.pdf", "image.png"}
    assert "empty" in skipped["empty.txt"] and "binary" in skipped["binary.txt"]
    assert "UTF-8" in skipped["latin1.txt"] and "unsupported" in skipped["image.png"]
    assert any("Warsaw" in p.text for p in c.passages)


PAGE = """<!DOCTYPE html><html><head><title>Slices</title><link rel="stylesheet" href="css/fonts.css">
<style>body { font-family: serif }</style><script>var theme = "navy";</script></head>
<body><nav><ul><li><a href="ch01.html">1. Getting Started</a></li></ul></nav>
<header><button class="theme">Coal</button></header>
<main><h1>The Slice Type</h1>
<p>A <em>string slice</em> is a reference to part of a
<code>String</code>, and it looks like this:</p>
<pre><code>let s = String::from("hello");
    let world = &amp;s[6..11];</code></pre>
<ul><li>first item</li><li>second item</li></ul>
<svg viewBox="0 0 320 512"><path d="M41.4 233.4c-12.5"/></svg></main>
<footer>Font Awesome Free 6.2.0</footer></body></html>"""


def test_an_html_page_is_read_as_its_text_not_its_markup(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "ch04.html").write_text(PAGE)
    text = "\n\n".join(p.text for p in load_corpus(d).passages)
    assert "A string slice is a reference to part of a String, and it looks like this:" in text
    assert 'let s = String::from("hello");\n    let world = &s[6..11];' in text  # code keeps its lines
    assert "The Slice Type" in text and "first item\n\nsecond item" in text
    for markup in ("<", "stylesheet", "font-family", "theme", "Getting Started", "Coal", "M41.4", "Font Awesome"):
        assert markup not in text, markup


def test_empty_folder_is_an_error_that_says_why(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "empty.txt").write_text("")
    with pytest.raises(CorpusError, match="empty.txt: empty file"):
        load_corpus(d)


def test_unknown_corpus_message_lists_choices():
    with pytest.raises(CorpusError, match="squad_dev"):
        load_corpus("no_such_corpus")


def test_check_document_pdf_header(tmp_path):
    p = tmp_path / "x.pdf"
    p.write_bytes(b"%PDF-1.4\n...")
    assert check_document(p) is None


def test_corpus_hash_changes_with_content():
    from rag.corpus import Corpus
    from rag.records import Passage

    a = Corpus("x", [Passage("1", "a")])
    b = Corpus("x", [Passage("1", "b")])
    assert a.hash != b.hash and a.hash == Corpus("y", [Passage("1", "a")]).hash


def test_bm25_index_build_is_quiet_under_a_configured_root_logger(tmp_path, caplog):
    """bm25s sets its logger to DEBUG; with a root handler (as RAGAS's rouge metric adds) it must not talk."""
    import logging

    from rag.retrievers import bm25_retriever

    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"passage {i} about topic {i}"}) + "\n"
                         for i in range(3)))
    with caplog.at_level(logging.DEBUG):
        bm25_retriever(load_corpus(str(p)), top_k=2)
    assert not [r for r in caplog.records if r.name.startswith("bm25s") and r.levelno < logging.WARNING]
