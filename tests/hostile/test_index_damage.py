"""A damaged, foreign or shared index directory: rebuilt with one warning, never a traceback,
never used silently; corpora of the same name keep separate indexes.

The embedder is the one-hot KeywordEncoder behind a fake model directory, so a build takes
milliseconds and retrieval results are known exactly.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from rag.corpus import Corpus
from rag.records import Passage, write_jsonl
from tests.fakes import KeywordEncoder

VOCAB = ["harbour", "glacier", "volcano", "desert", "forest"]
PASSAGES = [Passage("p1", "The harbour is busy."), Passage("p2", "A glacier moves slowly."),
            Passage("p3", "The volcano erupted."), Passage("p4", "A desert is dry.")]
FAISS_FILE = "default__vector_store.json"


@pytest.fixture
def embedder(tmp_path, monkeypatch):
    import rag.embedder
    import rag.index

    enc = KeywordEncoder(VOCAB)
    monkeypatch.setattr(rag.index, "load_sentence_transformer", lambda *a, **k: enc)
    monkeypatch.setattr(rag.embedder, "load_sentence_transformer", lambda *a, **k: enc)
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    model = tmp_path / "models" / "keywords"
    model.mkdir(parents=True)
    (model / "modules.json").write_text("[]")
    (model / "model.safetensors").write_bytes(b"keyword weights")
    return str(model)


def _built(corpus, embedder):
    from rag.embedder import resolve_embedder
    from rag.index import get_index, index_dir, read_manifest

    get_index(corpus, embedder, progress=False)
    path = index_dir(corpus, resolve_embedder(embedder).label)
    return path, read_manifest(path)


def _top(index, q: str) -> str:
    return index.as_retriever(similarity_top_k=1).retrieve(q)[0].node.node_id


def _other_index_faiss(tmp_path, embedder) -> bytes:
    from rag.index import build_index

    other = Corpus("other", PASSAGES[:2])
    return (build_index(other, embedder, out_dir=tmp_path / "other-idx", progress=False) / FAISS_FILE).read_bytes()


def _edit_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del m[k]
    (path / "manifest.json").write_text(json.dumps(m))


def _write(path, name, data: bytes):
    (path / name).write_bytes(data)


# (name, corruption(index dir, tmp_path, embedder)); every one must be rebuilt with one warning.
CORRUPTIONS = [
    ("faiss truncated", lambda p, t, e: _write(p, FAISS_FILE, (p / FAISS_FILE).read_bytes()[:40])),
    ("faiss zeroed", lambda p, t, e: _write(p, FAISS_FILE, bytes((p / FAISS_FILE).stat().st_size))),
    ("faiss deleted", lambda p, t, e: (p / FAISS_FILE).unlink()),
    ("faiss random bytes, same size", lambda p, t, e: _write(p, FAISS_FILE, os.urandom((p / FAISS_FILE).stat().st_size))),
    # An old manifest records no file sizes: only loading and counting can tell.
    ("faiss zeroed, manifest without sizes", lambda p, t, e: (
        _edit_manifest(p, files=None), _write(p, FAISS_FILE, bytes((p / FAISS_FILE).stat().st_size)))),
    ("faiss of another corpus (2 vectors)", lambda p, t, e: (
        _edit_manifest(p, files=None), _write(p, FAISS_FILE, _other_index_faiss(t, e)))),
    ("manifest invalid JSON", lambda p, t, e: _write(p, "manifest.json", b'{"corpus": "docs", ')),
    ("manifest empty", lambda p, t, e: _write(p, "manifest.json", b"")),
    ("manifest a list", lambda p, t, e: _write(p, "manifest.json", b"[1, 2]")),
    ("manifest lacks n_passages", lambda p, t, e: _edit_manifest(p, n_passages=None)),
    ("manifest n_passages wrong", lambda p, t, e: _edit_manifest(p, n_passages=3)),
    ("manifest deleted", lambda p, t, e: (p / "manifest.json").unlink()),
    ("manifest of another corpus", lambda p, t, e: _edit_manifest(p, corpus_hash="0" * 16)),
    ("docstore random bytes", lambda p, t, e: _write(p, "docstore.json", os.urandom(500))),
    ("docstore emptied of nodes", lambda p, t, e: (
        _edit_manifest(p, files=None), _write(p, "docstore.json", b'{"docstore/data": {}}'))),
    ("index_store truncated", lambda p, t, e: _write(p, "index_store.json", (p / "index_store.json").read_bytes()[:30])),
    ("index_store deleted", lambda p, t, e: (p / "index_store.json").unlink()),
]


@pytest.mark.parametrize("name,corrupt", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_damaged_index_is_rebuilt_with_one_warning(embedder, tmp_path, capsys, name, corrupt):
    from rag.index import get_index, read_manifest

    corpus = Corpus("docs", PASSAGES)
    path, before = _built(corpus, embedder)
    capsys.readouterr()
    corrupt(path, tmp_path, embedder)
    index = get_index(corpus, embedder, progress=False)
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and str(path) in warnings[0], err
    assert "rebuilding it" in warnings[0] and "Traceback" not in err
    assert _top(index, "Where is the glacier?") == "p2"
    after = read_manifest(path)
    assert after.n_passages == 4 and after.corpus_hash == corpus.hash and after.files
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_an_intact_index_is_loaded_as_it_is(embedder, capsys):
    from rag.index import get_index, read_manifest

    corpus = Corpus("docs", PASSAGES)
    path, before = _built(corpus, embedder)
    capsys.readouterr()
    index = get_index(corpus, embedder, progress=False)
    assert capsys.readouterr().err == "" and read_manifest(path) == before
    assert _top(index, "volcano") == "p3"


def test_an_index_of_other_weights_is_refused_not_replaced(embedder, tmp_path):
    """Replacing a model's index stays the caller's choice (the harness rebuilds, the app asks)."""
    from rag.index import IndexMismatchError, get_index

    corpus = Corpus("docs", PASSAGES)
    path, _ = _built(corpus, embedder)
    (tmp_path / "models" / "keywords" / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(IndexMismatchError, match="built with embedder"):
        get_index(corpus, embedder, progress=False)


def test_cli_index_rebuilds_a_damaged_index_without_a_traceback(embedder, capsys):
    from app.cli import main
    from rag.embedder import resolve_embedder
    from rag.index import index_dir

    corpus_dir = os.path.join(os.environ["DISTILRAG_HOME"], "..", "c")
    os.makedirs(corpus_dir)
    f = os.path.join(corpus_dir, "corpus.jsonl")
    write_jsonl(f, [{"_id": p.docid, "text": p.text} for p in PASSAGES])
    assert main(["index", "--corpus", f, "--embedder", embedder]) == 0
    from rag.corpus import load_corpus

    path = index_dir(load_corpus(f), resolve_embedder(embedder).label)
    (path / FAISS_FILE).write_bytes(b"\0" * 64)
    capsys.readouterr()
    assert main(["index", "--corpus", f, "--embedder", embedder]) == 0
    out, err = capsys.readouterr()
    assert err.count("warning:") == 1 and str(path) in err and "Traceback" not in err
    assert f"index {path}: 4 passages" in out


def test_corpora_of_the_same_name_keep_their_own_indexes(embedder, tmp_path, capsys):
    """Every BEIR file is corpus "corpus" and many folders are "docs": indexing b must not replace a's."""
    from app.cli import main
    from rag.corpus import load_corpus
    from rag.embedder import resolve_embedder
    from rag.index import get_index, index_dir, read_manifest

    label = resolve_embedder(embedder).label
    files = []
    for name, passages in (("a", PASSAGES[:2]), ("b", PASSAGES[2:])):
        (tmp_path / name).mkdir()
        files.append(tmp_path / name / "corpus.jsonl")
        write_jsonl(files[-1], [{"_id": p.docid, "text": p.text} for p in passages])
    for f in files:
        assert main(["index", "--corpus", str(f), "--embedder", embedder]) == 0
    a, b = (load_corpus(str(f)) for f in files)
    assert a.name == b.name == "corpus" and index_dir(a, label) != index_dir(b, label)
    assert read_manifest(index_dir(a, label)).corpus_hash == a.hash
    assert read_manifest(index_dir(b, label)).corpus_hash == b.hash
    capsys.readouterr()
    assert _top(get_index(a, embedder, progress=False), "glacier") == "p2"
    assert _top(get_index(b, embedder, progress=False), "volcano") == "p3"
    assert capsys.readouterr().err == ""  # both loaded, neither rebuilt


def test_shipped_corpus_keeps_its_readable_directory_and_legacy_indexes_are_adopted(embedder, monkeypatch):
    from rag.embedder import resolve_embedder
    from rag.index import get_index, index_dir, index_key
    from rag.settings import indexes_dir

    label = resolve_embedder(embedder).label
    shipped = Corpus("squad_dev", PASSAGES, chunking={"unit": "paragraph"})
    assert index_key(shipped) == "squad_dev"
    user = Corpus("docs", PASSAGES)
    assert index_key(user).startswith("docs-") and index_key(user) != index_key(Corpus("docs", PASSAGES[:3]))
    # An index a previous version kept under the bare name is moved into place, not rebuilt.
    from rag.index import build_index

    legacy = build_index(user, embedder, out_dir=indexes_dir() / "docs" / label, progress=False)
    built_at = json.loads((legacy / "manifest.json").read_text())["built_at"]
    get_index(user, embedder, progress=False)
    path = index_dir(user, label)
    assert not legacy.exists() and json.loads((path / "manifest.json").read_text())["built_at"] == built_at
    shutil.rmtree(path)



def test_an_index_is_parsed_once_while_its_files_stay_the_same(embedder, monkeypatch, capsys):
    """The verdict and the harness build many pipelines over one index: it is loaded once, and
    loaded (and checked) again as soon as any of its files changes."""
    import rag.index as index_mod
    from rag.index import get_index

    corpus = Corpus("kb", PASSAGES)
    loads = []
    real = index_mod.load_index
    monkeypatch.setattr(index_mod, "load_index", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    path, _ = _built(corpus, embedder)  # tried (missing), built, loaded
    n = len(loads)
    first = get_index(corpus, embedder, progress=False)
    assert get_index(corpus, embedder, progress=False) is first and len(loads) == n
    (path / FAISS_FILE).write_bytes(b"not an index")  # damaged: its files changed
    second = get_index(corpus, embedder, progress=False)  # checked again, found damaged, rebuilt
    assert second is not first and "rebuilding it" in capsys.readouterr().err
    assert _top(second, "glacier") == "p2"
