"""The index manifest and its checks, shared by both stores of dense indexes: FAISS files
(rag/index.py) and Milvus collections (rag/milvus_index.py), so both refuse and rebuild alike.

A Manifest records what an index was built from: the corpus (name, content hash, chunking), the
embedder's identity (label, path, weights sha256), the vector dimension and the index type.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from rag.corpus import Corpus
from rag.embedder import EmbedderId
from rag.errors import UserError
from rag.settings import CORPORA_DIR, indexes_dir

MANIFEST = "manifest.json"


class IndexMismatchError(UserError, RuntimeError):
    """The index on disk was built for another embedder or corpus; it must be rebuilt."""


class IndexCorpusMismatchError(IndexMismatchError):
    """Built for another corpus (or version of it): `get_index` rebuilds it."""

    def __init__(self, message: str, why: str):
        self.why = why
        super().__init__(message)


class IndexMissingError(UserError, FileNotFoundError):
    pass


class IndexDamagedError(UserError, ValueError):
    """The files on disk cannot be this index (unreadable, truncated, counts off): rebuild it."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = path, why
        super().__init__(f"The index at {path} {why}; rebuild it with `distilrag index --rebuild`.")


@dataclass(frozen=True)
class Manifest:
    corpus: str
    corpus_hash: str
    n_passages: int
    chunking: dict
    embedder_label: str
    embedder_path: str
    embedder_hash: str
    dim: int
    index_type: str
    metric: str = "inner_product (normalised vectors = cosine)"
    built_at: str = ""
    build_seconds: float = 0.0
    files: dict = field(default_factory=dict)  # stored file -> bytes; {} in manifests older than it


def index_key(corpus: Corpus) -> str:
    """The directory of a corpus's indexes: a shipped corpus keeps its name, any other gets
    name-<content hash>, so two corpora of the same name never overwrite each other's index."""
    shipped = corpus.chunking.get("unit") == "paragraph" and (CORPORA_DIR / corpus.name / "corpus.jsonl.gz").exists()
    return corpus.name if shipped else f"{corpus.name}-{corpus.hash[:10]}"


def index_dir(corpus: Corpus, embedder_label: str) -> Path:
    """Where the index of `corpus` by that embedder lives (a name alone cannot tell two corpora apart)."""
    return indexes_dir() / index_key(corpus) / embedder_label


def read_manifest(path: Path) -> Manifest:
    """The manifest of the index at `path`; IndexDamagedError when it is not a valid one."""
    try:
        d = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise IndexDamagedError(path, f"has an unreadable {MANIFEST} ({type(e).__name__})") from None
    return manifest_from_dict(d, path, MANIFEST)


def manifest_from_dict(d, where: Path | str, what: str) -> Manifest:
    """The Manifest in `d` (a FAISS index's file, a Milvus collection's property: `what`), checked;
    IndexDamagedError naming `where` when it is not a valid one."""
    required = {x.name for x in fields(Manifest) if x.default is x.default_factory is MISSING}
    if not isinstance(d, dict):
        raise IndexDamagedError(where, f"has a {what} that is not a JSON object")
    if required - d.keys():
        raise IndexDamagedError(where, f"has a {what} without {', '.join(sorted(required - d.keys()))}")
    names = {x.name for x in fields(Manifest)}
    m = Manifest(**{k: v for k, v in d.items() if k in names})
    if not isinstance(m.n_passages, int) or not isinstance(m.files, dict):
        raise IndexDamagedError(where, f"has a {what} with a malformed n_passages or files field")
    return m


def check_manifest(m: Manifest, eid: EmbedderId, corpus: Corpus | None, path: Path) -> None:
    if m.embedder_hash != eid.weights_hash:
        raise IndexMismatchError(
            f"The index at {path} was built with embedder '{m.embedder_label}' "
            f"({m.embedder_path}, weights {m.embedder_hash[:12]}) but the query embedder is "
            f"'{eid.label}' ({eid.path}, weights {eid.weights_hash[:12]}). Rebuild it: "
            f"`distilrag index --corpus {m.corpus} --embedder {eid.spec} --rebuild`."
        )
    if corpus is not None and m.corpus_hash != corpus.hash:
        why = (f"was built for another version of corpus '{m.corpus}' (hash {m.corpus_hash}, "
               f"now {corpus.hash})")
        raise IndexCorpusMismatchError(
            f"The index at {path} {why}. Rebuild it: "
            f"`distilrag index --corpus {m.corpus} --embedder {eid.spec} --rebuild`.", why)
