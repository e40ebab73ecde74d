"""Corpora: the shipped ones under `corpora/<name>/`, a BEIR-style JSONL, or a folder of documents.

In:  corpora/<name>/{corpus.jsonl.gz, queries.jsonl.gz, qrels.tsv}; a `.jsonl[.gz]` of
     {"_id"|"id", "title", "text"|"contents"}; a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv);
     or a folder of .txt/.md/.html/.pdf files (chunked).
Out: `Corpus` (Passage records + content hash), Query records, qrels {qid: {docid: rel}}.

Bad files in a folder (unreadable, binary, empty, undecodable) are reported by name and skipped;
the rest is still ingested. An empty result is an error that says why.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from rag.records import Passage, Query, read_jsonl
from rag.settings import CORPORA_DIR
from rag.errors import UserError

DOC_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}
TEXT_SUFFIXES = DOC_SUFFIXES - {".pdf"}
HTML_SUFFIXES = {".html", ".htm"}
MAX_FILE_BYTES = 50 * 1024 * 1024


class CorpusError(UserError, ValueError):
    pass


@dataclass
class Corpus:
    name: str
    passages: list[Passage]
    chunking: dict = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    key: str = ""  # unique per source (see corpus_key); "" = the name (corpora built in code)

    def __post_init__(self):
        self.key = self.key or self.name

    @cached_property
    def by_id(self) -> dict[str, Passage]:
        return {p.docid: p for p in self.passages}

    @cached_property
    def hash(self) -> str:
        """Content hash over ids, titles and texts: an index is valid only for this exact corpus."""
        h = hashlib.sha256()
        for p in self.passages:
            h.update(json.dumps([p.docid, p.title, p.text], ensure_ascii=False).encode())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.passages)


def passage_text(p: Passage) -> str:
    """What gets embedded, BM25-indexed and scored by the ranker: title then text (titles carry the topic)."""
    return join_title(p.title, p.text)


def passage_node(p: Passage, embedding: list[float] | None = None):
    """A passage as the LlamaIndex node every retriever returns: id = docid, the title embedded
    with the text, docid and source kept out of what is embedded and what the LLM reads."""
    from llama_index.core.schema import TextNode

    return TextNode(id_=p.docid, text=p.text, embedding=embedding,
                    metadata={"docid": p.docid, "title": p.title, "source": p.source},
                    excluded_embed_metadata_keys=["docid", "source"],
                    excluded_llm_metadata_keys=["docid", "source"])


def join_title(title: str, text: str) -> str:
    return f"{title}\n{text}" if title else text


def corpus_key(spec: str | Path) -> str:
    """A name unique per corpus source: the shipped name, or the file/folder name plus a hash of
    its absolute path (every BEIR export is a `corpus.jsonl`; two folders may both be `docs`).
    Indexes and published models are kept under it, so two such corpora never evict each other."""
    if isinstance(spec, Corpus):
        return spec.key
    spec = str(spec)
    if "/" not in spec and "\\" not in spec and (CORPORA_DIR / spec / "corpus.jsonl.gz").exists():
        return spec
    path = Path(spec).expanduser().resolve()
    if path.parent == CORPORA_DIR.resolve() and (path / "corpus.jsonl.gz").exists():
        return path.name
    stem = path.name.split(".")[0] or "corpus"
    return f"{stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def shipped_corpora() -> list[str]:
    return sorted(d.name for d in CORPORA_DIR.iterdir() if (d / "corpus.jsonl.gz").exists())


def load_corpus(spec: str | Path, chunk_size: int = 200, chunk_overlap: int = 30) -> Corpus:
    """Load a shipped corpus by name, a JSONL file, or a folder of documents."""
    shipped = CORPORA_DIR / str(spec)
    path = Path(spec).expanduser()
    # A corpus directory in the shipped layout (by name under corpora/, or by path).
    for d in ((shipped,) if not path.is_absolute() else ()) + (path,):
        if (d / "corpus.jsonl.gz").exists():
            return Corpus(name=d.name, passages=list(read_jsonl(d / "corpus.jsonl.gz", Passage)),
                          chunking={"unit": "paragraph"}, key=corpus_key(d if d is path else d.name))
    if _beir_folder(path):  # BEIR's layout: corpus.jsonl, queries.jsonl, qrels/
        return replace(_load_jsonl_corpus(_beir_file(path, "corpus")), name=path.name, key=corpus_key(path))
    if path.is_file() and path.name.endswith((".jsonl", ".jsonl.gz")):
        return replace(_load_jsonl_corpus(path), key=corpus_key(path))
    if path.is_dir():
        return replace(load_folder(path, chunk_size=chunk_size, chunk_overlap=chunk_overlap), key=corpus_key(path))
    raise CorpusError(
        f"Corpus {spec!r} not found. Give a shipped corpus name ({', '.join(shipped_corpora())}), "
        "a .jsonl/.jsonl.gz file with _id (or id)/title/text fields, or a folder of .txt/.md/.html/.pdf files."
    )


# Field names of the common exports: BEIR (_id/title/text), Pyserini (id/contents), and plain
# id/text dumps. The first present wins, in this order.
ID_FIELDS = ("_id", "docid", "doc_id", "id")
TEXT_FIELDS = ("text", "contents", "content", "body")


def _first(d: dict, names: tuple[str, ...]):
    return next((d[k] for k in names if d.get(k) is not None), None)


def _load_jsonl_corpus(path: Path) -> Corpus:
    passages, seen = [], {}
    for i, d in enumerate(read_jsonl(path)):
        docid, text = _first(d, ID_FIELDS), _first(d, TEXT_FIELDS)
        if docid is None or not isinstance(text, str):
            raise CorpusError(f"{path}: record {i + 1} lacks an id ({'/'.join(ID_FIELDS)}) or a text "
                              f"({'/'.join(TEXT_FIELDS)}) field; it has {', '.join(sorted(d)) or 'none'}.")
        docid = str(docid)
        if docid in seen:  # answers, qrels and indexes key on it: a repeat would silently shadow one
            raise CorpusError(f"{path}: records {seen[docid]} and {i + 1} share the id {docid!r}; "
                              "give every passage its own id.")
        seen[docid] = i + 1
        if text.strip():
            passages.append(Passage(docid=docid, text=text, title=d.get("title", "") or ""))
    if not passages:
        raise CorpusError(f"{path} holds no passage with non-empty text.")
    return Corpus(name=path.name.split(".")[0], passages=passages, chunking={"unit": "record"})


def check_document(path: Path) -> str | None:
    """Why `path` cannot be ingested, or None when it looks fine."""
    if path.suffix.lower() not in DOC_SUFFIXES:
        return f"unsupported type {path.suffix or '(none)'}; use one of {sorted(DOC_SUFFIXES)}"
    try:
        size = path.stat().st_size
        head = path.open("rb").read(8192)
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if size == 0:
        return "empty file"
    if size > MAX_FILE_BYTES:
        return f"too large ({size / 1e6:.0f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)"
    if path.suffix.lower() == ".pdf":
        return None if head.startswith(b"%PDF") else "not a PDF (no %PDF header)"
    if b"\x00" in head:
        return "binary content in a text file"
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (byte {e.start}); re-save it as UTF-8"
    return None


def walk_documents(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to ingest under `folder`, and (name, reason) for what is left out.

    Symbolic links are never followed (a link could pull in a file from anywhere on the machine)
    and hidden files and folders (.git, .venv, editor state) are skipped; both are reported.
    """
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        here = Path(root)
        for d in sorted(dirs):
            if d.startswith("."):
                skipped.append(((here / d).relative_to(folder).as_posix() + "/", "hidden folder"))
            elif (here / d).is_symlink():
                skipped.append(((here / d).relative_to(folder).as_posix() + "/", "symbolic link, not followed"))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for n in sorted(names):
            f = here / n
            rel = f.relative_to(folder).as_posix()
            if n.startswith("."):
                skipped.append((rel, "hidden file"))
            elif f.is_symlink():
                skipped.append((rel, "symbolic link, not followed"))
            elif f.is_file():
                files.append(f)
            else:
                skipped.append((rel, "not a regular file"))
    return files, skipped


# Text is cut at blank lines into blocks of about this many characters before sentence splitting:
# LlamaIndex's splitter on one 25-50 MB string ran into its regex timeout and lost the whole folder.
_SPLIT_BLOCK_CHARS = 200_000


def _blocks(text: str, size: int = _SPLIT_BLOCK_CHARS):
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n\n", start + size // 2, end)
            end = cut + 2 if cut > 0 else end
        yield text[start:end]
        start = end


def load_folder(folder: Path, chunk_size: int = 200, chunk_overlap: int = 30) -> Corpus:
    """Read every document under `folder` with LlamaIndex readers and chunk it into passages."""
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    files, skipped = walk_documents(folder)
    passages: list[Passage] = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        reason = check_document(f)
        chunks: list[str] = []
        if reason is None:
            try:  # reading and splitting: anything from ValueError to pdf errors to timeouts
                if f.suffix.lower() in HTML_SUFFIXES:  # the directory reader would keep the markup
                    from rag.html_text import html_text

                    text = html_text(f.read_text(encoding="utf-8"))
                else:
                    docs = SimpleDirectoryReader(input_files=[str(f)], raise_on_error=True).load_data()
                    text = "\n\n".join(d.text for d in docs if d.text and d.text.strip())
                chunks = [c for block in _blocks(text) for c in splitter.split_text(block) if c.strip()]
                reason = None if chunks else "no extractable text"
            except Exception as e:
                reason = f"could not be read: {type(e).__name__}: {e}"
        if reason:
            skipped.append((rel, reason))
            continue
        for i, chunk in enumerate(chunks):
            passages.append(Passage(docid=f"{rel}#{i}", text=chunk, title=f.stem, source=rel))
    if not passages:
        why = "; ".join(f"{n}: {r}" for n, r in skipped) or "the folder has no files"
        raise CorpusError(f"No passages could be read from {folder} ({why}).")
    return Corpus(name=folder.name, passages=passages, skipped=skipped,
                  chunking={"unit": "sentence_splitter", "chunk_size": chunk_size,
                            "chunk_overlap": chunk_overlap})


def _beir_file(folder: Path, stem: str) -> Path | None:
    """`folder`/<stem>.jsonl[.gz] of a BEIR export (corpus.jsonl, queries.jsonl), if it is there."""
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _beir_folder(corpus: str | Path) -> Path | None:
    path = Path(corpus).expanduser()
    if (CORPORA_DIR / str(corpus) / "corpus.jsonl.gz").exists() or not path.is_dir():
        return None
    return path if _beir_file(path, "corpus") else None


def load_queries(corpus: str | Path, split: str | None = None) -> list[Query]:
    """A corpus's own questions: the shipped layout's queries.jsonl.gz (each with its split), or a
    BEIR folder's queries.jsonl, whose split is the qrels/<split>.tsv that judges it."""
    beir = _beir_folder(corpus)
    if beir is not None:
        return _beir_queries(beir, split)
    path = _corpus_file(corpus, "queries.jsonl.gz")
    qs = list(read_jsonl(path, Query))
    if split:
        qs = [q for q in qs if q.split == split]
        if not qs:
            raise CorpusError(f"No queries with split={split!r} in {path}.")
    return qs


def _beir_queries(folder: Path, split: str | None) -> list[Query]:
    from rag.metrics import read_qrels
    from rag.questions import read_questions

    path = _beir_file(folder, "queries")
    if path is None:
        raise CorpusError(f"{folder} has no queries.jsonl: corpus {str(folder)!r} has no questions of its own.")
    splits = {f.stem: read_qrels(f) for f in sorted((folder / "qrels").glob("*.tsv"))}
    qs = [replace(q, split=next((s for s, qr in splits.items() if q.qid in qr), "")) for q in read_questions(path)]
    if split:
        if split not in splits:
            raise CorpusError(f"No queries with split={split!r}: {folder} has no qrels/{split}.tsv "
                              f"(it has {', '.join(sorted(splits)) or 'no qrels'}).")
        qs = [q for q in qs if q.split == split]
    return qs


def load_qrels(corpus: str | Path) -> dict[str, dict[str, int]]:
    """Gold relevance: the shipped layout's qrels.tsv, or every qrels/<split>.tsv of a BEIR folder."""
    from rag.metrics import read_qrels

    beir = _beir_folder(corpus)
    if beir is not None:
        files = sorted((beir / "qrels").glob("*.tsv"))
        if not files:
            raise CorpusError(f"{beir} has no qrels/<split>.tsv: corpus {str(corpus)!r} has no gold labels.")
        qrels: dict[str, dict[str, int]] = {}
        for f in files:
            for qid, rels in read_qrels(f).items():
                qrels.setdefault(qid, {}).update(rels)
        return qrels
    return read_qrels(_corpus_file(corpus, "qrels.tsv"))


def _corpus_file(corpus: str | Path, name: str) -> Path:
    base = CORPORA_DIR / str(corpus)
    if not base.is_dir():
        base = Path(corpus)
    path = base / name
    if not path.exists():
        raise CorpusError(f"{path} not found: corpus {corpus!r} has no {name}.")
    return path
