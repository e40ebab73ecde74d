import pytest

from retriever_training.permutations import parse_permutation, sliding_windows


@pytest.mark.parametrize("n,w,s", [(20, 10, 5), (10, 10, 5), (7, 4, 2), (1, 10, 5), (23, 10, 10), (5, 3, 1)])
def test_windows_cover_every_candidate_back_to_front(n, w, s):
    wins = sliding_windows(n, w, s)
    covered = set()
    for a, b in wins:
        assert 0 <= a < b <= n and b - a <= w
        covered.update(range(a, b))
    assert covered == set(range(n))
    assert wins[0][1] == n and wins[-1][0] == 0  # starts at the tail, ends at the head
    assert [a for a, _ in wins] == sorted([a for a, _ in wins], reverse=True)


def test_windows_count_rankgpt_default():
    assert sliding_windows(20, 10, 5) == [(10, 20), (5, 15), (0, 10)]
    assert sliding_windows(0, 10, 5) == []


@pytest.mark.parametrize("answer,n,perm,repairs", [
    ("[2] > [1] > [3]", 3, [1, 0, 2], 0),
    ("[2] > [2] > [1] > [3]", 3, [1, 0, 2], 1),              # duplicate dropped
    ("[4] > [1] > [9] > [2] > [3]", 4, [3, 0, 1, 2], 1),      # out of range dropped
    ("[2] > [1]", 4, [1, 0, 2, 3], 2),                         # missing appended in input order
    ("", 3, [0, 1, 2], 3),                                     # empty: input order, all missing
    ("I cannot rank these.", 2, [0, 1], 2),                    # malformed
    ("<think>maybe [1] > [2]</think>[3] > [1] > [2]", 3, [2, 0, 1], 0),  # think block ignored
    ("［２］ > ［１］", 2, [1, 0], 0),                            # full-width digits
    ("[0] > [1] > [2]", 2, [0, 1], 1),                         # 0 is out of range (1-based ids)
])
def test_parse_permutation_repairs(answer, n, perm, repairs):
    assert parse_permutation(answer, n) == (perm, repairs)
