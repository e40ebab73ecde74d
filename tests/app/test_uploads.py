"""Your own documents: validation (type, size, binary, undecodable), sanitised names that cannot
escape the uploads folder, folder import, and asking about them in the app (AppTest)."""
from __future__ import annotations

import os

import pytest

from app import uploads
from tests.app.helpers import ask, new_app, texts
from tests.fakes import minimal_pdf


@pytest.mark.parametrize("given, stored", [
    ("../../escape.txt", "escape.txt"),
    ("..\\..\\windows\\evil.md", "evil.md"),
    ("/etc/cron.d/job.txt", "job.txt"),
    (".hidden.txt", "hidden.txt"),
    ("Report (v2).MD", "Report_v2_.md"),
    ("..", "document"),
    ("naïve café.txt", "na_ve_caf_.txt"),
])
def test_sanitize_filename(given, stored):
    assert uploads.sanitize_filename(given) == stored


def test_store_uploads_rejects_bad_files_by_name_and_keeps_the_rest(tmp_path, monkeypatch):
    root = tmp_path / "data" / "uploads"
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 1000)
    report = uploads.store_uploads([
        ("../../../escape.txt", b"Plain text that tries to climb out."),
        ("binary.txt", b"\x00\x01\x02\x03PK\x05\x06"),
        ("latin1.txt", "café".encode("latin-1")),
        ("tool.exe", b"MZ\x90\x00"),
        ("fake.pdf", b"not a pdf at all"),
        ("big.txt", b"a" * 1001),
        ("empty.md", b""),
        ("good.md", b"# Good\n\nA fine document."),
        ("real.pdf", minimal_pdf(["A real PDF is kept."])),
    ], root=root)
    assert sorted(report.stored) == ["escape.txt", "good.md", "real.pdf"]
    reasons = dict(report.rejected)
    assert set(reasons) == {"binary.txt", "latin1.txt", "tool.exe", "fake.pdf", "big.txt", "empty.md"}
    assert "binary" in reasons["binary.txt"] and "UTF-8" in reasons["latin1.txt"]
    assert "unsupported type .exe" in reasons["tool.exe"] and "PDF" in reasons["fake.pdf"]
    assert "too large" in reasons["big.txt"] and "empty" in reasons["empty.md"]
    # Nothing outside the uploads folder, nothing left staged.
    assert sorted(p.name for p in root.iterdir()) == ["escape.txt", "good.md", "real.pdf"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["escape.txt", "good.md", "real.pdf"]


def test_same_name_other_content_is_not_overwritten(tmp_path):
    root = tmp_path / "uploads"
    uploads.store_uploads([("a.txt", b"first")], root=root)
    again = uploads.store_uploads([("a.txt", b"first"), ("sub/a.txt", b"second")], root=root)
    assert again.unchanged == ["a.txt"] and again.stored == ["a-2.txt"]
    assert (root / "a.txt").read_bytes() == b"first"


def test_import_folder_flattens_and_skips_links_hidden_and_bad(tmp_path):
    src = tmp_path / "notes"
    (src / "deep").mkdir(parents=True)
    (src / "deep" / "plan.md").write_text("# Plan\n\nShip it.")
    (src / ".git").mkdir()
    (src / ".git" / "config.txt").write_text("secret")
    (src / "data.bin").write_bytes(b"\x00\x01")
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    os.symlink(outside, src / "link.txt")
    root = tmp_path / "uploads"
    report = uploads.import_folder(src, root=root)
    assert report.stored == ["deep_plan.md"]
    assert dict(report.rejected) == {"data.bin": "unsupported type .bin", "link.txt": "symbolic link (not followed)"}
    assert uploads.import_folder(tmp_path / "missing", root=root).rejected[0][1].startswith("not a folder")


def test_upload_in_app_reports_bad_files_indexes_the_rest_and_answers(corpus_dir, app_home, fake_llm):
    at = new_app()
    at.radio(key="corpus_choice").set_value("my documents").run()
    # Before the first upload the mode explains itself; nothing reads like an error.
    assert "the chat answers from them alone" in texts(at.markdown) and not at.error
    assert "Index: built as soon as you add documents." in texts(at.sidebar.caption)
    ask(at, "What is in my notes?")
    assert "Add documents first" in texts(at.error)

    at.file_uploader(key="uploader").set_value([
        ("../../escape.txt", b"The secret launch code of project Falcon is 4471. It was set in May.", "text/plain"),
        ("binary.txt", b"\x00\x01\x02\x03\xff\xfe", "text/plain"),
        ("guide.md", b"# Guide\n\nThe office coffee machine is on the third floor.", "text/markdown"),
    ]).run()  # the browser reruns the script after an upload
    at.button(key="add_uploads").click().run()
    assert not at.exception, [e.value for e in at.exception]
    stored = sorted(p.name for p in (app_home / "uploads").iterdir())
    assert stored == ["escape.txt", "guide.md"]
    assert not (app_home.parent / "escape.txt").exists() and not (app_home / "escape.txt").exists()
    warning = texts(at.warning)
    assert "binary.txt" in warning and "binary content" in warning
    assert "escape.txt" in texts(at.success) and "guide.md" in texts(at.success)
    assert list((app_home / "indexes").glob("uploads*/base/manifest.json"))

    ask(at, "What is the launch code of project Falcon?")
    r = at.session_state["turns"][-1]["results"][0]
    assert r["error"] is None and r["sources"][0]["docid"] == "escape.txt#0"
    assert "4471" in r["text"]


def test_import_folder_in_app(corpus_dir, app_home, fake_llm, tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    (src / "recipe.txt").write_text("Pancakes need flour, milk and two eggs.")
    (src / "photo.png").write_bytes(b"\x89PNG\r\n")
    at = new_app()
    at.radio(key="corpus_choice").set_value("my documents").run()
    at.text_input(key="folder_path").input(str(src)).run()
    at.button(key="import_folder").click().run()
    assert not at.exception
    assert "photo.png" in texts(at.warning) and "recipe.txt" in texts(at.success)
    ask(at, "How many eggs do pancakes need?")
    assert at.session_state["turns"][-1]["results"][0]["sources"][0]["docid"] == "recipe.txt#0"
