"""Your own documents: validate uploads or a folder and store them under the app's data dir.

    <distilrag home>/uploads/   one flat folder of the user's documents (the "my documents" corpus)

Every file is checked before it is kept (type, size limit, readable, UTF-8 text or a real PDF:
`rag.corpus.check_document`); a bad file is reported by name with the reason and the rest are
still stored. Stored names are sanitised (no directories, no hidden files, a safe alphabet) and
the final path is checked to lie inside the uploads folder, so no name can write elsewhere.
No Streamlit import here: the UI and the tests call these functions directly.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from rag.corpus import DOC_SUFFIXES, MAX_FILE_BYTES, check_document

MAX_NAME = 120          # long names are legal but unreadable in the UI and near filesystem limits
MAX_FOLDER_FILES = 2000  # a folder path pointing at a whole home directory should not hang the app


@dataclass
class StoreReport:
    stored: list[str] = field(default_factory=list)               # stored names (sanitised)
    unchanged: list[str] = field(default_factory=list)            # identical copy already stored
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name as given, reason)

    @property
    def changed(self) -> bool:
        return bool(self.stored)


def uploads_root() -> Path:
    from rag.settings import home

    return home() / "uploads"


def sanitize_filename(name: str) -> str:
    """A safe flat file name for a user-supplied one: the base name only, a restricted alphabet.

    "../../etc/passwd.txt" -> "passwd.txt"; "C:\\x\\..\\Report (v2).md" -> "Report_v2_.md";
    ".hidden.txt" -> "hidden.txt" (hidden files are skipped by the folder reader).
    """
    base = re.split(r"[\\/]", name)[-1]
    base = unicodedata.normalize("NFKC", base)
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)
    base = re.sub(r"\.{2,}", ".", base).lstrip("._-")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem[: MAX_NAME - len(suffix) - 1] or "document"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def _inside(root: Path, path: Path) -> bool:
    root, path = root.resolve(), path.resolve()
    return path.parent == root


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _target(root: Path, safe: str, data: bytes) -> tuple[Path, bool]:
    """Where `data` goes under `root`; True when an identical file is already there.

    A different file with the same name gets "-2", "-3"... so one upload never overwrites another.
    """
    stem, suffix = Path(safe).stem, Path(safe).suffix
    candidate, n = root / safe, 1
    while candidate.exists():
        if candidate.is_file() and _digest(candidate.read_bytes()) == _digest(data):
            return candidate, True
        n += 1
        candidate = root / f"{stem}-{n}{suffix}"
    return candidate, False


def store_file(name: str, data: bytes, root: Path, report: StoreReport) -> None:
    """Validate one document given as (name, bytes) and store it under `root` when it is good."""
    safe = sanitize_filename(name)
    if Path(safe).suffix.lower() not in DOC_SUFFIXES:
        report.rejected.append((name, f"unsupported type {Path(safe).suffix or '(none)'}; "
                                      f"use one of {', '.join(sorted(DOC_SUFFIXES))}"))
        return
    if len(data) > MAX_FILE_BYTES:
        report.rejected.append((name, f"too large ({len(data) / 1e6:.0f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)"))
        return
    root.mkdir(parents=True, exist_ok=True)
    # Validate a staged copy with the same checks the corpus reader applies, before it is kept.
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".staging-") as tmp:
        staged = Path(tmp) / safe
        staged.write_bytes(data)
        reason = check_document(staged)
        if reason:
            report.rejected.append((name, reason))
            return
        dest, same = _target(root, safe, data)
        if not _inside(root, dest):  # defence in depth: sanitize_filename already forbids this
            report.rejected.append((name, "unsafe file name"))
            return
        if same:
            report.unchanged.append(dest.name)
            return
        shutil.move(str(staged), dest)
    report.stored.append(dest.name)


def store_uploads(files: list[tuple[str, bytes]], root: Path | None = None) -> StoreReport:
    """Store uploaded (name, bytes) pairs; bad ones are reported, the rest kept."""
    root = root or uploads_root()
    report = StoreReport()
    for name, data in files:
        store_file(name, data, root, report)
    return report


def import_folder(folder: str | Path, root: Path | None = None) -> StoreReport:
    """Copy the documents of a local folder (recursively) into the uploads folder.

    Nested paths are flattened into the file name ("a/b.txt" -> "a_b.txt"); symbolic links and
    hidden files are skipped so a folder cannot pull in files from elsewhere.
    """
    root = root or uploads_root()
    src = Path(str(folder).strip()).expanduser()
    report = StoreReport()
    if not str(folder).strip():
        report.rejected.append(("(folder)", "give the path of a folder on this machine"))
        return report
    if not src.is_dir():
        report.rejected.append((str(folder), "not a folder on this machine (check the path)"))
        return report
    src = src.resolve()
    if src == root.resolve() or root.resolve() in src.parents:
        report.rejected.append((str(folder), "this is the uploads folder itself"))
        return report
    seen = 0
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            report.rejected.append((rel.as_posix(), "symbolic link (not followed)"))
            continue
        if not path.is_file():
            continue
        seen += 1
        if seen > MAX_FOLDER_FILES:
            report.rejected.append((rel.as_posix(), f"more than {MAX_FOLDER_FILES} files; add subfolders separately"))
            break
        if path.suffix.lower() not in DOC_SUFFIXES:
            report.rejected.append((rel.as_posix(), f"unsupported type {path.suffix or '(none)'}"))
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            report.rejected.append((rel.as_posix(), f"too large (> {MAX_FILE_BYTES / 1e6:.0f} MB)"))
            continue
        store_file("_".join(rel.parts), path.read_bytes(), root, report)
    if seen == 0 and not report.rejected:
        report.rejected.append((str(folder), "the folder holds no files"))
    return report


def list_documents(root: Path | None = None) -> list[Path]:
    root = root or uploads_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def remove_document(name: str, root: Path | None = None) -> bool:
    root = root or uploads_root()
    path = root / sanitize_filename(name)
    if path.is_file() and _inside(root, path):
        path.unlink()
        return True
    return False


def fingerprint(root: Path | None = None) -> str:
    """Changes whenever a stored document is added, removed or replaced (a cache key)."""
    h = hashlib.sha256()
    for p in list_documents(root):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
