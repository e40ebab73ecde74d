"""Test-wide guards: no network beyond 127.0.0.1, one CPU thread, a private distilrag home.

The embedded LLM's weights stay in the user's model cache (1.1 GB, verified once) so tests
that need the real model do not download it again.
"""
from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname other than localhost would need DNS: refuse


def _guarded_connect(self, address):
    if not _allowed(address):
        raise ConnectionRefusedError(f"network guard: tests may not connect to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _allowed(address):
        raise ConnectionRefusedError(f"network guard: tests may not connect to {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


@pytest.fixture(scope="session", autouse=True)
def _distilrag_env(tmp_path_factory):
    from rag.settings import apply_offline_env, models_dir

    models = str(models_dir())  # resolve before moving DISTILRAG_HOME
    home = tmp_path_factory.mktemp("distilrag_home")
    os.environ["DISTILRAG_HOME"] = str(home)
    os.environ["DISTILRAG_MODELS_DIR"] = models
    os.environ.pop("OPENAI_API_KEY", None)
    apply_offline_env()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield home
