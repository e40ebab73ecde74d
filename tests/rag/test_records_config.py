import gzip

import pytest

from rag.config import ConfigError, load_sections
from rag.records import CandidateList, Candidate, append_jsonl, read_jsonl, write_jsonl
from retriever_training.recipe import LABEL_SECTIONS


def test_roundtrip_nested_records_and_gzip(tmp_path):
    rec = CandidateList("q1", "what?", "bm25", [Candidate("d1", 1.5, 1), Candidate("d2", 0.5, 2)])
    for name in ("a.jsonl", "a.jsonl.gz"):
        write_jsonl(tmp_path / name, [rec])
        assert list(read_jsonl(tmp_path / name, CandidateList)) == [rec]
    # reproducible bytes: the same content gives the same .gz
    first = (tmp_path / "a.jsonl.gz").read_bytes()
    write_jsonl(tmp_path / "a.jsonl.gz", [rec])
    assert (tmp_path / "a.jsonl.gz").read_bytes() == first


def test_torn_last_line_is_skipped_but_torn_middle_line_is_an_error(tmp_path):
    p = tmp_path / "r.jsonl"
    append_jsonl(p, {"qid": "1"})
    append_jsonl(p, {"qid": "2"})
    with open(p, "a") as f:
        f.write('{"qid": "3"')  # killed mid-write
    assert [r["qid"] for r in read_jsonl(p)] == ["1", "2"]
    p.write_text('{"qid": "1"}\n{"qid"\n{"qid": "3"}\n')
    with pytest.raises(ValueError, match=":2:"):
        list(read_jsonl(p))


def test_config_yaml_overrides_and_type_errors(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("queries:\n  n: 50\nllm_rank:\n  mode: listwise\n")
    cfgs = load_sections(y, LABEL_SECTIONS, ["--queries.seed=3", "llm_rank.window=4"])
    assert cfgs["queries"].n == 50 and cfgs["queries"].seed == 3
    assert cfgs["llm_rank"].mode == "listwise" and cfgs["llm_rank"].window == 4
    with pytest.raises(ConfigError, match="queries.n"):
        load_sections(y, LABEL_SECTIONS, ["queries.n=many"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_sections(y, LABEL_SECTIONS, ["queries.nn=1"])
    y.write_text("querys:\n  n: 5\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_sections(y, LABEL_SECTIONS)
