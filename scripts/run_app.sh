#!/usr/bin/env bash
# The main job: set everything up (idempotent) and start the chat UI on the shipped corpus with the
# embedded local LLM. Prints the URL; Ctrl-C stops the UI and the LLM server it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
.venv/bin/distilrag llm fetch >/dev/null          # download + verify the GGUF once (1.1 GB)
.venv/bin/distilrag index --corpus squad_dev --embedder base   # builds once, then reuses
exec .venv/bin/distilrag app --corpus squad_dev --port "${PORT:-8501}" --background-retrain
