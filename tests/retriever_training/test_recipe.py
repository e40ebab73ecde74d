"""The one recipe: defaults + the trimmed shipped YAML resolve to what the full YAML did; the
command-line shortcuts; config mistakes are errors that name the key and the fix."""
from pathlib import Path

import pytest

from rag.config import ConfigError, load_sections
from rag.corpus import Corpus
from rag.records import Passage
from rag.settings import REPO_ROOT
from retriever_training.recipe import SECTIONS, check_config, corpus_slug, parse_command, resolve

# The shipped config before its settings became the defaults (its comments are in
# docs/experiments-squad_dev-config-notes.md); every key the retrain read was spelled out.
OLD_SQUAD_DEV_YAML = """
label:
  corpus: squad_dev
  labels_dir: corpora/squad_dev/labels/qwen2.5-coder-1.5b-ql
queries:
  source: split
  split: train
  n: 1000
  seed: 0
candidates:
  retriever: hybrid
  depth: 20
llm_rank:
  mode: query_likelihood
  max_candidates: 10
ranker:
  loss: lambda
  epochs: 1
  list_size: 8
  min_steps: 100
  batch_size: 8
  lr: 1.0e-4
  max_length: 256
  pairs_per_forward: 4
  attention_dropout: 0
  hidden_dropout: 0
  freeze_word_embeddings: true
  heldout_fraction: 0.1
  freeze_layers: 0
teacher:
  unlabelled_queries: 1000
  depth: 4
distill:
  loss: kl
  in_batch_negatives: true
  group_by_document: true
  docs_per_query: 4
  student_temperature: 0.05
  teacher_temperature: 1.0
  epochs: 1
  batch_size: 32
  lr: 4.0e-5
  max_seq_length: 512
  rows_per_forward: 8
  hidden_dropout: 0
  freeze_word_embeddings: true
  dev_queries: 400
run:
  name: squad_dev
"""
SHIPPED = REPO_ROOT / "retriever_training" / "configs" / "squad_dev.yaml"


def test_trimmed_shipped_yaml_resolves_to_the_full_one(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(OLD_SQUAD_DEV_YAML)
    assert load_sections(SHIPPED, SECTIONS) == load_sections(old, SECTIONS)
    # The trimmed file holds only what is the corpus's own.
    import yaml

    kept = {f"{s}.{k}" for s, keys in yaml.safe_load(SHIPPED.read_text()).items() for k in keys}
    assert kept == {"label.corpus", "label.labels_dir", "queries.source", "queries.split", "run.name"}


def test_no_yaml_needed_corpus_and_queries_shortcuts():
    _, cfgs = parse_command(["--corpus", "my_docs/", "--queries", "log.txt", "--queries.n=50"], "t", "")
    assert cfgs["label"].corpus == "my_docs/"
    assert (cfgs["queries"].source, cfgs["queries"].file, cfgs["queries"].n) == ("file", "log.txt", 50)
    assert cfgs["distill"].max_seq_length == 512 and cfgs["ranker"].loss == "lambda"  # the recipe
    _, cfgs = parse_command(["--corpus", "c.jsonl"], "t", "")
    assert cfgs["queries"].source == "synthesize"  # no log: the LLM writes the queries
    # --config and overrides still work, an override winning over both.
    _, cfgs = parse_command(["--config", str(SHIPPED), "--queries", "log.txt", "--run.name=x"], "t", "")
    assert (cfgs["label"].corpus, cfgs["queries"].source, cfgs["run"].name) == ("squad_dev", "file", "x")


def test_labels_dir_and_run_name_derived_per_corpus_and_selection(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    corpus = Corpus("corpus", [Passage("a", "alpha")])
    log = tmp_path / "log.txt"
    log.write_text("what is alpha?\n")
    a = tmp_path / "a" / "corpus.jsonl"
    b = tmp_path / "b" / "corpus.jsonl"
    _, cfgs = parse_command(["--corpus", str(a), "--queries", str(log)], "t", "")
    first = resolve(cfgs, corpus)
    assert Path(first["label"].labels_dir).parent == tmp_path / "runs" / "labels"
    assert first["run"].name == corpus_slug(str(a)) and first["run"].name.startswith("corpus-")
    assert corpus_slug(str(a)) != corpus_slug(str(b)) and corpus_slug("squad_dev") == "squad_dev"
    # another queries.n, or the same log edited: another label set
    _, more = parse_command(["--corpus", str(a), "--queries", str(log), "--queries.n=5"], "t", "")
    assert resolve(more, corpus)["label"].labels_dir != first["label"].labels_dir
    log.write_text("what is alpha?\nwho wrote alpha?\n")
    assert resolve(cfgs, corpus)["label"].labels_dir != first["label"].labels_dir
    # given explicitly, they stay
    _, named = parse_command(["--corpus", str(a), "--label.labels_dir=mine", "--run.name=r"], "t", "")
    assert (resolve(named, corpus)["label"].labels_dir, resolve(named, corpus)["run"].name) == ("mine", "r")


@pytest.mark.parametrize("args, message", [
    (["--ranker.epoch=1"], "did you mean 'epochs'"),
    (["--llm_ranks.x=2"], "did you mean 'llm_rank'"),
    (["--llm_rank.max_candidates=-3"], "llm_rank.max_candidates must be greater than 0"),
    (["--llm_rank.max_candidates=0"], "llm_rank.max_candidates must be greater than 0"),
    (["--queries.n=-1"], "queries.n must be 0 or more"),
    (["--ranker.heldout_fraction=1.5"], "ranker.heldout_fraction must be at least 0 and below 1"),
    (["--distill.lr=0"], "distill.lr must be greater than 0"),
    (["--ranker.loss=listwise"], "ranker.loss must be one of"),
    (["--ranker.pairs_per_forward=0"], "pairs_per_forward must be 1 or more"),
    (["--queries.source=csv"], "queries.source must be one of"),
    (["--queries.source=file"], "needs the query log"),
    (["--run.unranked=maybe"], "run.unranked must be one of"),
    (["--distill.epochs=two"], "distill.epochs: expected int"),
    (["--teacher.depth=8"], "teacher.depth (8) differs from distill.docs_per_query (4)"),
    (["--ranker.list_size=12"], "ranker.list_size (12) exceeds llm_rank.max_candidates (10)"),
    (["--candidates.depth=5"], "candidates.depth (5) is below llm_rank.max_candidates (10)"),
    (["--llm_rank.max_candidates=6", "--candidates.depth=6", "--ranker.list_size=6",
      "--teacher.depth=8", "--distill.docs_per_query=8"], "teacher.depth (8) exceeds candidates.depth (6)"),
    (["--corp=x"], "unknown option '--corp=x'"),
])
def test_config_mistakes_are_errors(args, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_command(["--corpus", "c.jsonl", *args], "t", "")


def test_no_corpus_and_unknown_yaml_section_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="no corpus: give --corpus"):
        parse_command([], "t", "")
    y = tmp_path / "c.yaml"
    y.write_text("label:\n  corpus: c.jsonl\nranker:\n  epoch: 1\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        parse_command(["--config", str(y)], "t", "")
    y.write_text("label:\n  corpus: c.jsonl\nteachr:\n  depth: 4\n")
    with pytest.raises(ConfigError, match="did you mean 'teacher'"):
        parse_command(["--config", str(y)], "t", "")
    y.write_text("label:\n  corpus: [c.jsonl\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_command(["--config", str(y)], "t", "")
    y.write_text("label: c.jsonl\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_command(["--config", str(y)], "t", "")


def test_label_checks_every_section(monkeypatch):
    """`distilrag label` reads only the labelling sections but must not let a retrain typo pass."""
    from retriever_training import label

    monkeypatch.setattr(label, "run_labelling", lambda *a, **k: pytest.fail("labelled despite a bad config"))
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        label.main(["--corpus", "squad_dev", "--ranker.epoch=1"])


def test_defaults_pass_the_coupling_checks():
    check_config(load_sections(None, SECTIONS, ["label.corpus=x"]))
