"""The embedded server's prompt reading with and without every position's logits.

    python benchmarks/bench_llm_server.py [--prompts 3] [--chars 3500]

Starts the embedded model's server twice through rag.llm.spawn_server (what the product starts),
with `logits=True` (llama-cpp-python's default, which token log-probs need) and `logits=False`
(what the chat, `ask` and `eval` now get), and sends each the same RAG-sized prompts (a passage of
`--chars` characters, each prompt different from its first token so that no prefix cache helps)
with max_tokens 1: seconds per prompt, prompt tokens per second and the server's resident memory.
Prints one JSON line per setting; run it with the CPU otherwise quiet.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--chars", type=int, default=3500)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import openai

    from rag.llm import LOCAL_ALIAS, free_port, spawn_server
    from rag.models import ensure_llm

    gguf = ensure_llm()
    passage = (ROOT / "docs/experiments-squad_dev.md").read_text()[: a.chars]
    with tempfile.TemporaryDirectory() as tmp:
        for logits in (True, False):
            port = free_port()
            proc = spawn_server(gguf, port, a.threads, 4096, Path(tmp) / "server.log", logits=logits)
            try:
                client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=900)

                def ask(i: int) -> tuple[float, int]:
                    t0 = time.perf_counter()
                    out = client.chat.completions.create(
                        model=LOCAL_ALIAS, max_tokens=1, temperature=0.0,
                        messages=[{"role": "user", "content": f"({i}) {passage}\nSummarise the text above."}])
                    return time.perf_counter() - t0, out.usage.prompt_tokens

                ask(-1)  # the first request pays the model's warm-up
                runs = [ask(i) for i in range(a.prompts)]
                rss = int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 2**20
                secs = [t for t, _ in runs]
                print(json.dumps({"logits_all": logits, "prompt_tokens": runs[0][1], "seconds": [round(t, 2) for t in secs],
                                  "prompt_tok_per_s": round(sum(n for _, n in runs) / sum(secs), 1),
                                  "server_rss_gib": round(rss, 2)}), flush=True)
            finally:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
