"""Every prompt's id, version and text are pinned: they are part of the content-hash cache keys
of answers, grounding verdicts and the committed label set, so a wording change must come with a
version bump (then update the pin here)."""
import dataclasses
import hashlib
import json

import pytest

from rag import prompts as P


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_sha(p: P.Prompt) -> str:
    """Every field but the id and version: templates, tail, few-shot examples, answer pattern."""
    rest = {k: v for k, v in dataclasses.asdict(p).items() if k not in ("id", "version")}
    return sha(json.dumps(rest, sort_keys=True))


PINNED = {  # name: (id, version, sha256 of its text)
    "QA": ("distilrag-qa-cite", 1, "dcced0d4b693541e563da671e2eecf77ecfeca2bf86493281cbfefeb72ffb1a4"),
    "QA_REFINE": ("distilrag-qa-cite", 1, "b2de1ee9d8521fbcdc94ba91a77bcce6ebf83c23270a73e9bf795d54aee00b20"),
    "GROUNDING": ("answer-supported-yes-no", 1, "2368af84418cd43a6c3bbec3fd5ed85de4694e6598c74f024487692aafeec679"),
    "QUERY_LIKELIHOOD": ("upr-query-likelihood", 1, "c93f24df37d0db81d9b81878ba0f1c7d48e1c829fb4964a435cb6b83d797f2f0"),
    "LISTWISE": ("rankgpt-listwise", 1, "55eb255963fcab9c8e4897a6e528add35f6247db29b9808f6e0424ae9b4c92c6"),
    "POINTWISE": ("yes-no-pointwise", 1, "6d60c257d063b1d2516249cc1c3fe345625a415cfe41e3ad736a19c898e340fd"),
    "SYNTH_QUESTION": ("inpars-fewshot-question", 1, "aaffb123d98b3d640a35f65eca4e3632e0dd2737b0c6d68f9bca18f87240e1eb"),
    "SYNTH_QUESTIONS": ("inpars-fewshot-questions", 1, "ad42cc0c4e6d56f1c4117f778e3da53c6e6fba592d58c57d5e4778adef7ea401"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_prompt_keeps_its_id_version_and_text(name):
    p = getattr(P, name)
    pid, version, digest = PINNED[name]
    assert (p.id, p.version) == (pid, version)
    assert text_sha(p) == digest, (f"{name} changed wording: bump its version (answers and labels cached "
                                   "under the old one must not be served for it), then update this pin")


def test_every_prompt_is_pinned():
    assert {id(p) for p in P.ALL} == {id(getattr(P, n)) for n in PINNED}


def test_texts_are_the_ones_the_cached_labels_and_answers_were_made_with():
    """Hashes of the prompts' text and rendered messages as they were before the prompts moved here."""
    from rag.grounding import grounding_prompt
    from retriever_training.rank_chat import listwise_messages, pointwise_messages
    from retriever_training.synthesize import question_messages

    assert sha(P.QA.template) == "f69059e964df17bec46747b9501dfc4af74fc32985921e142df6c5b69a51f278"
    assert sha(P.QA_REFINE.template) == "93ca25c6284220407e24732fadbe207107c3d7d3c899da6a49ae2509ddea5dc8"
    assert sha(P.GROUNDING.template) == "eea3af9dd1854e00aa7592c0128c10ac0182a0c0dc34426d280ce814d7b826a2"
    assert sha(grounding_prompt("Ans", "Pass", " Q? ")) == "c728e70ba8c882a9975b7c7418cc01494b6de4c81f93a5b8d0918d32dbeddc19"
    ql = P.QUERY_LIKELIHOOD
    assert sha(ql.template) == "80f1fe761836c29cfc0362fabe3851877701acf6165ae0b688e9682e8c1c6476"
    assert ql.tail == "\nPlease write a question based on this passage.\nQuestion:" and ql.template.endswith(ql.tail)
    assert [sha(P.LISTWISE.system), sha(P.LISTWISE.user), sha(P.POINTWISE.system), sha(P.POINTWISE.user)] == [
        "dd4da91fa32822f4202aaa9345b1cbdbcbd600d93347a441fd2a28cbcdf50f3f",
        "6a2b8a35ee40a3fb90f3e953397a3f4f634aa599653cc0274960cc0d8c010865",
        "307d8b09d706679abebf668593cb878e558f02a311abe3c77b2121af8a4539bd",
        "02cd020da10d3b8544cc3f8c3a163303aacf86d3e7144fb3c9c9049c5df50c40"]
    assert sha(json.dumps(listwise_messages("q {a}", ["p1", "p2 x"]))) == \
        "c99946f7853951a2ba27bc90ab3967a7e844cf3036b9902b9aa0e765ac90f090"
    assert sha(json.dumps(pointwise_messages("q", "p"))) == "24adbaf4ba45ed93d604788839b2d78243a325e7384683ff22c5bec3a9cce5cf"
    assert sha(json.dumps(P.SYNTH_QUESTIONS.examples)) == "e5753eeae9ca7496f59f7a93155d71f2318c6cdc1fa741a9ccbb282eb9ee1eb9"
    assert [sha(json.dumps(question_messages("P {x} text", k))) for k in (1, 2, 3)] == [
        "5b5e6dd06e21b33b23723345c4609a5f1fa06f6d175c6c7b2869241916ee84b6",
        "4d670d0e2460578d970b5848916e5e20f208357f5ed62d83fa20c2c7bec82476",
        "79128724e16028988efebbe80681be40a945bf8bb37e8f6eb4b3dbcf99c1bfdc"]


def test_cache_keys_and_record_names_are_unchanged():
    """The query-likelihood pair key (the committed label set's cache) and the names records carry."""
    from retriever_training.label import _prompt_id
    from retriever_training.query_likelihood import QLConfig
    from retriever_training.rank_ql import pair_key
    from retriever_training.synthesize import prompt_of

    assert pair_key("m", "T", "x y", " q ", QLConfig()) == \
        "23353f294310931dce5fa9e503c01aadebfe4dc21cb4a8b81f7bbc6c5c5ba909"
    assert [_prompt_id(m) for m in ("listwise", "pointwise", "query_likelihood")] == \
        ["rankgpt-listwise@v1", "yes-no-pointwise@v1", "upr-query-likelihood@v1"]
    assert [prompt_of(k) for k in (1, 2, 3)] == [("inpars-fewshot-question", 1), ("inpars-fewshot-questions", 1),
                                                ("inpars-fewshot-questions", 1)]
    from rag.chain import NO_ANSWER

    assert NO_ANSWER == "I don't know based on the provided documents."
