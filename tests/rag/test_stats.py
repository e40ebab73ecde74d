"""Paired bootstrap on toy data whose answer is known."""
import pytest

from rag.stats import bootstrap_ci, paired_bootstrap, paired_by_qid


def test_clear_improvement_is_significant():
    a = [0.0] * 50 + [1.0] * 50
    b = [1.0] * 100               # b fixes the 50 questions a misses: delta 0.5
    r = paired_bootstrap(a, b, seed=1)
    assert r["delta"] == pytest.approx(0.5)
    assert 0.35 < r["ci_low"] < 0.5 < r["ci_high"] < 0.65
    assert r["p_value"] == pytest.approx(1e-4)  # floor: no resample crosses zero


def test_no_difference_gives_high_p_and_ci_around_zero():
    a = [0.0, 1.0] * 50
    b = [1.0, 0.0] * 50  # same mean, every pair differs
    r = paired_bootstrap(a, b, seed=0)
    assert r["delta"] == 0.0
    assert r["ci_low"] < 0 < r["ci_high"]
    assert r["p_value"] > 0.5
    assert paired_bootstrap([1, 0], [1, 0])["p_value"] == 1.0


def test_seeded_and_paired_by_qid():
    a = {"q1": 0.1, "q2": 0.5, "q3": 0.9, "x": 1.0}
    b = {"q3": 1.0, "q1": 0.4, "q2": 0.5}
    r1, r2 = paired_by_qid(a, b, seed=3), paired_by_qid(a, b, seed=3)
    assert r1 == r2 and r1["n"] == 3
    assert r1["delta"] == pytest.approx((0.3 + 0.0 + 0.1) / 3)
    lo, hi = bootstrap_ci([0.2] * 10)
    assert lo == hi == pytest.approx(0.2)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])
