#!/usr/bin/env bash
# Create .venv and install distilrag with every extra; a no-op when pyproject.toml is unchanged.
# Sourced by run_app.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[distilrag] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.distilrag-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[distilrag] installing packages (first time: ~10 min, most of it compiling llama.cpp)"
  # Portable llama.cpp build (no -march=native), so a cached wheel runs on any x86-64 machine.
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]' 2>&1 \
    | grep -v -E "^WARNING: Location .* is ignored" || true
  .venv/bin/python -c "import llama_cpp, sentence_transformers, faiss, llama_index.core, ragas, streamlit" \
    || { echo "[distilrag] installation failed; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
