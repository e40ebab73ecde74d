"""Every prompt the product sends to an LLM, kept as data: its id, version and text.

A prompt's id and version are part of every content-hash cache key its calls are stored under
(answers, grounding verdicts, the LLM's rankings of a label set): change a prompt's wording and
you must bump its version, or answers to the old wording are served for the new one.
tests/rag/test_prompts.py pins each prompt's id, version and a sha256 of its text, so a wording
change without a version bump fails there.

Who uses which (the reading of the LLM's replies stays with them):
    QA, QA_REFINE        rag/chain.py                     the cited answer
    GROUNDING            rag/grounding.py                 is the answer in the cited passage? yes/no
    QUERY_LIKELIHOOD     retriever_training/query_likelihood.py, rank_ql.py   log p(query | passage)
    LISTWISE, POINTWISE  retriever_training/rank_chat.py  the LLM ranks a query's candidates
    SYNTH_QUESTION(S)    retriever_training/synthesize.py  questions for a corpus without queries
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """A chat prompt (`system` + `user` turn templates) or a completion prompt (`template`).

    `tail`: the end of `template` a prompt cut to fit the context keeps; `example` and
    `examples`: the template of one few-shot example and the examples, (passage, questions).
    """
    id: str
    version: int
    system: str = ""
    user: str = ""
    template: str = ""
    tail: str = ""
    example: str = ""
    examples: tuple = ()
    answer_pattern: str = ""  # what a well-formed answer looks like (validation, not extraction)

    @property
    def ref(self) -> str:
        """How records name it: "<id>@v<version>"."""
        return f"{self.id}@v{self.version}"


NO_ANSWER = "I don't know based on the provided documents."


def is_no_answer(text: str) -> bool:
    """The answer declines (NO_ANSWER, or the model's own wording of it)."""
    t = text.lower()
    return "don't know" in t or "do not know" in t or "not contain" in t

# Instructions after the sources: the small embedded model follows the most recent text best
# (measured: with the instructions first it rarely cited). One id and version for both templates.
QA = Prompt(
    id="distilrag-qa-cite", version=1,
    template=("Sources:\n{context_str}\n\n"
              "Question: {query_str}\n\n"
              "Answer the question in one short sentence using only the sources above, and end the "
              "sentence with the number of the source that contains the answer, like [2]. If no source "
              f"contains the answer, reply exactly: {NO_ANSWER}"),
)
QA_REFINE = Prompt(
    id=QA.id, version=QA.version,
    template=("Existing answer: {existing_answer}\n\nMore sources:\n{context_msg}\n\n"
              "Improve the existing answer using these sources too, in one short sentence ending with the "
              f"number of the source that contains the answer, like [2]. If no source contains it, reply exactly: {NO_ANSWER}"),
)

GROUNDING = Prompt(
    id="answer-supported-yes-no", version=1,
    template=("Passage: {passage}\n\n"
              "Question: {question}\n"
              "Proposed answer: {answer}\n\n"
              "Does this passage state that {answer} is the answer to the question? Answer yes or no."),
)

_QL_TAIL = "\nPlease write a question based on this passage.\nQuestion:"
QUERY_LIKELIHOOD = Prompt(
    id="upr-query-likelihood", version=1,
    template="Passage: {title}. {text}" + _QL_TAIL,
    tail=_QL_TAIL,
)

LISTWISE = Prompt(
    id="rankgpt-listwise", version=1,
    system="You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.",
    user=("I will provide you with {n} passages, each indicated by a numerical identifier []. "
          "Rank the passages based on their relevance to the search query: {query}\n\n{passages}\n\n"
          "Search Query: {query}\nRank the {n} passages above based on their relevance to the search query. "
          "List them in descending order of relevance using their identifiers, the most relevant first. "
          "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking, "
          "do not say any word or explain."),
    answer_pattern=r"^\s*\[\d+\](\s*>\s*\[\d+\])*\s*$",
)
POINTWISE = Prompt(
    id="yes-no-pointwise", version=1,
    system="You judge whether a passage answers a question.",
    user="Passage: {passage}\n\nQuestion: {query}\n\nDoes the passage answer the question? Answer Yes or No.",
    answer_pattern=r"^\s*(yes|no)\b",
)
RANKING = {"listwise": LISTWISE, "pointwise": POINTWISE}  # by llm_rank.mode

# Each passage's first question is the single-question prompt's example; the others show what
# "different" means (another fact of the passage, not a rewording).
_FEW_SHOT = (
    ("The Amazon rainforest covers much of the Amazon basin of South America, an area of seven "
     "million square kilometres, of which five and a half million are covered by the rainforest.",
     ("How many square kilometres of the Amazon basin are covered by rainforest?",
      "On which continent is the Amazon basin?",
      "How large is the area of the Amazon basin?")),
    ("Oxygen is a chemical element with symbol O and atomic number 8. It is a member of the "
     "chalcogen group on the periodic table and is a highly reactive nonmetal.",
     ("What is the atomic number of oxygen?",
      "To which group of the periodic table does oxygen belong?",
      "What is the chemical symbol of oxygen?")),
    ("The Black Death was one of the most devastating pandemics in human history, peaking in "
     "Europe between 1347 and 1351.",
     ("In which years did the Black Death peak in Europe?",
      "Where did the Black Death peak between 1347 and 1351?",
      "What kind of disaster was the Black Death?")),
)
SYNTH_QUESTION = Prompt(  # one question per passage: the examples inline, in one user turn
    id="inpars-fewshot-question", version=1,
    system="You write one specific question that the given passage answers.",
    user="{shots}\n\nPassage: {passage}\nQuestion:",
    example="Passage: {passage}\nQuestion: {question}",
    examples=_FEW_SHOT,
)
SYNTH_QUESTIONS = Prompt(  # k per passage: the examples as earlier chat turns (user: passage, assistant: k questions)
    id="inpars-fewshot-questions", version=1,
    system=("You write {k} different specific questions that the given passage answers, one per line, "
            "each about a different fact."),
    user="Passage: {passage}",
    examples=_FEW_SHOT,
)

ALL = (QA, QA_REFINE, GROUNDING, QUERY_LIKELIHOOD, LISTWISE, POINTWISE, SYNTH_QUESTION, SYNTH_QUESTIONS)
