"""Run llama.cpp's OpenAI-compatible server on a GGUF model: linkner_router's offline LLM."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..lm.gguf import EMBEDDED_MODEL
from .llms import resolve_llm

INSTALL_HINT = (
    "pip install 'spacy-ember[llm]' (llama.cpp's server; it compiles, ~8 minutes on 2 cores)"
)


def server_command(
    model: str | Path = EMBEDDED_MODEL, host: str = "127.0.0.1", port: int = 8080, n_ctx: int = 2048
) -> list[str]:
    """The command line of `python -m llama_cpp.server` for a known LLM's name (see
    llms.py), a GGUF file or package/file.gguf."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"llama.cpp's server is not installed: {INSTALL_HINT}") from err
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_llm(model)),
        "--host", host, "--port", str(port), "--n_ctx", str(n_ctx),
        "--n_threads", str(os.cpu_count() or 1),  # its default is half the cores
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    base_url: str  # ".../v1"
    process: subprocess.Popen

    def stop(self) -> None:
        """Stop the server now (the fault tests kill it mid-run)."""
        self.process.terminate()


@contextmanager
def running_server(
    model: str | Path = EMBEDDED_MODEL, port: int | None = None, startup_timeout: float = 120.0
) -> Iterator[RunningServer]:
    """Start the server on a loopback port and wait until it answers; stop it after."""
    port = port or free_port()
    log = tempfile.TemporaryFile(mode="w+")  # its request log, read back on a failed start
    proc = subprocess.Popen(
        server_command(model, "127.0.0.1", port), stdout=log, stderr=subprocess.STDOUT, text=True
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama.cpp server exited: {log.read()[-2000:]}")
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=2).close()
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"llama.cpp server not up after {startup_timeout} s"
                    ) from err
                time.sleep(0.5)
        yield RunningServer(base_url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
