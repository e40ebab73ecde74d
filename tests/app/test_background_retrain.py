"""The first run's background retrain: started once, its progress shown, and the distilled model
switched on in the chat the moment it is published, without a restart. A fake trainer stands in
for the 18-minute retrain: it prints tqdm-like progress and writes the stage markers."""
from __future__ import annotations

import sys
import time

from tests.app.helpers import new_app

FAKE_TRAINER = r'''
import sys, time, json, pathlib
run = pathlib.Path(sys.argv[1]); (run / "stages").mkdir(parents=True, exist_ok=True)
(run / "label_report.json").write_text("{}")
(run / "stages" / "ranker.json").write_text("{}")
for i in range(1, 4):
    sys.stderr.write(f"\rteacher scores:  {i * 25}%|##  | {i * 25}/100 [00:0{i}<00:0{9 - i}, 2.0it/s]")
    sys.stderr.flush()
time.sleep(float(sys.argv[2]))
'''


def _fake(tmp_path, run_dir, sleep):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return [sys.executable, str(script), str(run_dir), str(sleep)]


def test_job_status_reports_stage_progress_and_failure(tmp_path, monkeypatch):
    from app import retrain_job

    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    run_dir = tmp_path / "runs" / "squad_dev"
    pid = retrain_job.start("squad_dev", command=_fake(tmp_path, run_dir, 30))
    try:
        assert retrain_job.start("squad_dev", command=_fake(tmp_path, run_dir, 30)) == pid  # once
        deadline = time.monotonic() + 30
        while "75%" not in (s := retrain_job.status("squad_dev", run_dir)).step and time.monotonic() < deadline:
            time.sleep(0.2)
        assert s.state == "running" and s.stage == "teacher" and s.done_stages == 1
        assert s.step == "75/100 (75%)" and s.stage_left == "00:06"
        assert "stage 2 of 5: scoring with the ranker" in s.summary
    finally:
        import os
        import signal

        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while retrain_job.running_pid("squad_dev") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert retrain_job.status("squad_dev", run_dir).state in ("stopped", "failed")


def test_sidebar_shows_the_retrain_and_switches_distilled_on_when_published(app_home, fake_llm, monkeypatch, tmp_path):
    from app import retrain_job
    from rag.embedder import set_published
    from rag.models import base_embedder_path

    monkeypatch.setenv("DISTILRAG_CORPUS", "squad_dev")
    run_dir = tmp_path / "runs" / "squad_dev"
    monkeypatch.setattr(retrain_job, "runs_dir", lambda: tmp_path / "runs")
    pid = retrain_job.start("squad_dev", command=_fake(tmp_path, run_dir, 60))
    try:
        deadline = time.monotonic() + 30
        while "75%" not in retrain_job.status("squad_dev").step and time.monotonic() < deadline:
            time.sleep(0.2)
        at = new_app()
        assert list(at.radio(key="retriever").options) == ["base", "bm25", "hybrid"]
        shown = "\n".join(str(e.value) for e in at.sidebar.info)
        assert "background retrain stage 2 of 5: scoring with the ranker 75/100 (75%)" in shown
        set_published("distilled", base_embedder_path(), "squad_dev")  # the retrain publishes
        at.run()
        assert "distilled" in list(at.radio(key="retriever").options)
    finally:
        import os
        import signal

        os.kill(pid, signal.SIGKILL)


def test_a_finished_retrain_that_published_nothing_does_not_loop(app_home, fake_llm, monkeypatch, tmp_path):
    """A run directory with metrics.json but no model published for this data dir (the verdict
    refused, or it published elsewhere): the sidebar says so once; the page must not rerun forever."""
    from app import retrain_job

    monkeypatch.setenv("DISTILRAG_CORPUS", "squad_dev")
    run_dir = tmp_path / "runs" / "squad_dev"
    (run_dir / "stages").mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    monkeypatch.setattr(retrain_job, "runs_dir", lambda: tmp_path / "runs")
    retrain_job.log_path("squad_dev").parent.mkdir(parents=True, exist_ok=True)
    retrain_job.log_path("squad_dev").write_text("--- start\nnot published: a tie\n")
    at = new_app(timeout=60)
    assert "published nothing for this data dir" in "\n".join(str(c.value) for c in at.sidebar.caption)
    assert at.chat_input(key="question") is not None


def test_a_refusal_is_reported_with_what_serves_the_corpus_not_as_a_failure(tmp_path, monkeypatch):
    from app import retrain_job

    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    run_dir = tmp_path / "runs" / "squad_dev"
    log = retrain_job.log_path("squad_dev")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("--- retrain started\nverdict: base: 100%|###| 18/18\n"
                   "not published: the distilled retriever is not better than the base on held-out queries.\n"
                   "On 18 held-out questions the LLM ranked, the distilled retriever agrees with the LLM worse "
                   "than the base: nDCG@10 .66 vs .66 (-.01); not published.\n"
                   "This corpus is now served by bm25 (nDCG@10 .76 on the held-out questions), the best "
                   "pipeline that needs no distilled retriever.\n")
    s = retrain_job.status("squad_dev", run_dir)
    assert s.state == "refused" and s.summary.startswith("finished, the distilled retriever not published")
    assert "served by bm25" in s.summary and "worse than the base" in s.summary
    log.write_text(log.read_text() + "Traceback (most recent call last):\n  boom\n")
    assert retrain_job.status("squad_dev", run_dir).state == "failed"
