"""The committed QA report is the one place its figures live: the README quotes its table, and the
report's own summary bullets quote its paired comparisons, without retyping them wrong."""
import re

from rag.settings import REPO_ROOT

DOC = REPO_ROOT / "docs" / "qa-squad_dev.md"


def _table(md: str) -> dict[str, dict[str, float]]:
    """{retriever: {column: mean}} of the report's "Retrievers side by side" table."""
    part = md.split("## Retrievers side by side", 1)[1].split("\n## ", 1)[0]
    rows = [r.strip().strip("|").split("|") for r in part.splitlines() if r.startswith("|")]
    head = [h.strip() for h in rows[0]]
    out = {}
    for r in rows[2:]:
        cells = [c.strip() for c in r]
        out[cells[0]] = {h: float(c.split()[0]) for h, c in zip(head[1:], cells[1:]) if re.match(r"^[\d.]+", c)}
    return out


def _fmt(v: float) -> str:
    return f"{v:.3f}".lstrip("0")


def test_the_report_covers_what_its_title_says_and_the_readme_quotes_its_table():
    md = DOC.read_text()
    n = int(re.search(r"base vs distilled \((\d+) questions\)", md).group(1))
    t = _table(md)
    assert {"base", "run-distilled", "run-hybrid-distilled+ranker"} <= set(t)
    assert {row["n"] for row in t.values()} == {n}
    readme = (REPO_ROOT / "README.md").read_text()
    quoted = re.search(r"answer in context ([.\d]+) vs ([.\d]+)[^;]*; the best pipeline ([.\d]+)", readme)
    assert quoted, "the README no longer quotes answer in context: update this test with it"
    assert quoted.groups() == (_fmt(t["run-distilled"]["answer_in_context"]), _fmt(t["base"]["answer_in_context"]),
                               _fmt(t["run-hybrid-distilled+ranker"]["answer_in_context"]))
    # the summary bullets above the report quote the same means
    for name, col in (("run-distilled", "recall@5"), ("run-distilled", "answer_in_context"), ("base", "recall@5")):
        assert _fmt(t[name][col]) in md.split("---", 1)[0], (name, col)
