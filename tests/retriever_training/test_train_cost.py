"""The dry run's training estimate: the work arithmetic, the planned counts, and the machine's own
speed taken from the latest retrain recorded on it."""
import json
import os

import pytest

from retriever_training.recipe import SECTIONS
from retriever_training.train_cost import (US_PER_TOKEN, TrainingSize, estimate_training, machine_speed,
                                           planned_size, training_line, training_work)


def cfgs(**sections):
    return {name: cls(**sections.get(name, {})) for name, cls in SECTIONS.items()}


SIZE = TrainingSize(passages=800, passage_tokens=180.0, train_queries=900, student_queries=1900, heldout=100)


def test_work_follows_what_each_stage_reads():
    c = cfgs()
    w = training_work(c, SIZE)
    assert set(w) == set(US_PER_TOKEN)
    bigger = training_work(c, TrainingSize(1600, 180.0, 900, 1900, 100))
    # a larger corpus costs the bi-encoder stages (they embed it) but not the ranker or its scoring
    assert bigger["ranker"] == w["ranker"] and bigger["teacher"] == w["teacher"]
    assert bigger["distill"] > w["distill"] and bigger["verdict"] > w["verdict"]
    # twice the epochs: about twice the ranker's work
    two = training_work(cfgs(ranker={"epochs": 2}), SIZE)
    assert two["ranker"] == pytest.approx(2 * w["ranker"])
    # a small label set gets more ranker epochs (min_steps), so its work is not proportional
    small = training_work(c, TrainingSize(800, 180.0, 90, 190, 10))
    assert small["ranker"] > w["ranker"] / 10 * 1.5
    # passages longer than the ranker reads are cut: the ranker's work stops growing
    long = training_work(c, TrainingSize(800, 5000.0, 900, 1900, 100))
    cap = training_work(c, TrainingSize(800, float(c["ranker"].max_length), 900, 1900, 100))
    assert long["ranker"] == cap["ranker"]


def test_planned_counts_from_the_log_and_the_top_up():
    c = cfgs(queries={"source": "file", "file": "log.txt", "n": 1000})
    s = planned_size(c, {"labelled_planned": 1000, "pool": 1500}, [object()] * 50, 150.0)
    held = round(1000 * c["ranker"].heldout_fraction)
    assert (s.train_queries, s.heldout) == (1000 - held, held)
    assert s.student_queries == 1000 - held + 500 and s.passages == 50
    topped = planned_size(cfgs(queries={"source": "file", "file": "l", "n": 100, "top_up_to": 400}),
                          {"labelled_planned": 100, "pool": 150}, [], 150.0)
    assert topped.student_queries - topped.train_queries == 50 + 250


def write_run(runs, name, machine, timings, work, age):
    d = runs / name
    d.mkdir(parents=True)
    p = d / "metrics.json"
    p.write_text(json.dumps({"machine": machine, "timings_s": timings, "training_work": work}))
    os.utime(p, (age, age))


def test_speed_is_the_median_of_this_machines_runs_that_ran_most_of_their_work(tmp_path):
    assert machine_speed(tmp_path, "m1")[0] == 1.0  # nothing recorded: the fitted costs
    work = training_work(cfgs(), SIZE)
    fitted = estimate_training(work, 1.0)
    write_run(tmp_path, "a", "m1", {s: 3 * v for s, v in fitted.items()}, work, 1_000)
    write_run(tmp_path, "b", "m1", {s: 2 * v for s, v in fitted.items()}, work, 2_000)
    write_run(tmp_path, "c", "m1", {**{s: 1.5 * v for s, v in fitted.items()}, "verdict": 0.0}, work, 3_000)
    write_run(tmp_path, "other-machine", "m2", {s: 10 * v for s, v in fitted.items()}, work, 4_000)
    # only the verdict rerun (resumed), beside another job: too little of the work to judge by
    write_run(tmp_path, "resumed", "m1", {"verdict": 9 * fitted["verdict"], "ranker": 0.0}, work, 5_000)
    speed, source = machine_speed(tmp_path, "m1")
    assert speed == pytest.approx(2.0) and source == "3 earlier retrains on this machine"
    est = estimate_training(work, speed)
    assert sum(est.values()) == pytest.approx(2 * sum(fitted.values()))
    line = training_line(est, SIZE, source)
    assert "900 labelled + 1000 ranker-scored" in line and "800 passages" in line
