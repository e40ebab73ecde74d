"""Deterministic fakes for unit tests only (never used by the product).

KeywordEncoder: a sentence-transformers-like encoder that one-hot encodes keywords, so
retrieval results and metrics are known exactly. ScriptedLLM: a LlamaIndex LLM that replays
scripted answers and counts calls. FakeChatClient: an `openai`-shaped client for the ranking
stage that returns scripted completions and counts requests. minimal_pdf: a tiny real PDF with a
text layer, for the document loaders.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class KeywordEncoder:
    def __init__(self, vocab: list[str]):
        self.vocab = [v.lower() for v in vocab]

    def encode(self, texts, normalize_embeddings: bool = True, batch_size: int = 32, **_: Any):
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        out = np.zeros((len(texts), len(self.vocab)), dtype="float32")
        for i, t in enumerate(texts):
            words = set(re.findall(r"\w+", t.lower()))
            for j, v in enumerate(self.vocab):
                out[i, j] = 1.0 if v in words else 0.0
            n = np.linalg.norm(out[i])
            if normalize_embeddings and n > 0:
                out[i] /= n
        return out[0] if single else out

    def get_sentence_embedding_dimension(self) -> int:
        return len(self.vocab)


def scripted_llm(answers: list[str] | Callable[[str], str]):
    """A LlamaIndex CustomLLM that answers from a script (list, cycled) or a function of the prompt."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    class ScriptedLLM(CustomLLM):
        calls: int = 0
        prompts: list = []
        streams_closed: int = 0  # streams ended by their consumer or run to the end

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=4096, num_output=256, model_name="scripted")

        def _next(self, prompt: str) -> str:
            self.prompts.append(prompt)
            self.calls += 1
            if callable(answers):
                return answers(prompt)
            return answers[(self.calls - 1) % len(answers)]

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            return CompletionResponse(text=self._next(prompt))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any):
            text = self._next(prompt)

            def gen():
                acc = ""
                try:
                    for tok in re.findall(r"\S+\s*", text):
                        acc += tok
                        yield CompletionResponse(text=acc, delta=tok)
                finally:
                    self.streams_closed += 1
            return gen()

    return ScriptedLLM(prompts=[])


@dataclass
class FakeChatClient:
    """Minimal `openai.OpenAI` stand-in: client.chat.completions.create(...) -> scripted text."""
    respond: Callable[[list[dict]], str]
    requests: list = field(default_factory=list)

    def __post_init__(self):
        outer = self

        class _Completions:
            def create(self, model: str, messages: list[dict], **params):
                outer.requests.append({"model": model, "messages": messages, **params})
                text = outer.respond(messages)

                class _Msg:
                    content = text

                class _Choice:
                    message = _Msg()
                    logprobs = None

                class _Usage:
                    prompt_tokens = sum(len(m["content"].split()) for m in messages)
                    completion_tokens = len(text.split())

                class _Resp:
                    choices = [_Choice()]
                    usage = _Usage()

                return _Resp()

        class _Chat:
            completions = _Completions()

        self.chat = _Chat()


def minimal_pdf(lines: list[str]) -> bytes:
    """A real one-page PDF whose text layer holds `lines` (Helvetica), with a correct xref table."""
    body = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>",
            f"<< /Length {len(body)} >>\nstream\n{body}\nendstream",
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = "%PDF-1.4\n", []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{o}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n" + "".join(f"{o:010d} 00000 n \n" for o in offsets)
    return (out + f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").encode("latin-1")
