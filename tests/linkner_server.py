"""A loopback OpenAI-compatible chat server with scripted replies, for LLM client tests.

Serves POST /v1/chat/completions on 127.0.0.1 (a free port); counts requests, records
their bodies and headers, and tracks how many are being answered at once. GET /v1/models
lists `served_model` (as llama.cpp lists the file it serves), or is 404 while it is None.
"""

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TokenLogprobs = tuple[str, float, list[tuple[str, float]]]


@dataclass
class Reply:
    """What the server does with one request."""

    content: str = '{"label": "PER"}'
    status: int = 200
    delay: float = 0.0  # seconds before answering (cut short when the server stops)
    logprobs: list[TokenLogprobs] | None = None
    body: bytes | None = None  # a raw body instead of a chat completion
    headers: dict[str, str] = field(default_factory=dict)
    die: bool = False  # shut the server down, then send this reply
    prompt_tokens: int = 50
    completion_tokens: int = 6


Script = Sequence[Reply] | Callable[[dict[str, Any], int], Reply]


def json_label_tokens(label: str, top: list[tuple[str, float]]) -> list[TokenLogprobs]:
    """Tokens of '{"label": "<label>"}' with `top` as the alternatives at the label."""
    chosen = dict(top)[label]
    tokens = [('{"', 0.0), ("label", 0.0), ('":', 0.0), (' "', 0.0)]
    out: list[TokenLogprobs] = [(t, lp, [(t, lp)]) for t, lp in tokens]
    out.append((label, chosen, top))
    out.append(('"}', 0.0, [('"}', 0.0)]))
    return out


def completion(model: str, n: int, reply: Reply) -> dict[str, Any]:
    logprobs = None
    if reply.logprobs is not None:
        logprobs = {
            "content": [
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": None,
                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top],
                }
                for token, logprob, top in reply.logprobs
            ]
        }
    usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
    return {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": reply.content},
                "logprobs": logprobs,
            }
        ],
        "usage": {**usage, "total_tokens": sum(usage.values())},
    }


class FakeLLMServer:
    """Answers request n with script[n] (the last reply once the script runs out), or
    with script(body, n) when the script is a function."""

    def __init__(self, script: Script = (Reply(),)) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.served_model: str | None = None
        self.model_listings = 0  # GET /v1/models answered
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._stopped = False
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        return len(self.bodies)

    def reply_for(self, body: dict[str, Any], n: int) -> Reply:
        if callable(self.script):
            return self.script(body, n)
        return self.script[min(n, len(self.script) - 1)]

    def stop(self) -> None:
        """Stop listening (later requests are refused) and wake any delayed reply."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeLLMServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(owner: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served = owner.served_model
            if self.path.rstrip("/") != "/v1/models" or served is None:
                self._send(404, b'{"error": {"message": "not found"}}', {})
                return
            with owner._lock:
                owner.model_listings += 1
            entry = {"id": served, "object": "model", "created": 0, "owned_by": "fake"}
            self._send(200, json.dumps({"object": "list", "data": [entry]}).encode(), {})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, b'{"error": {"message": "not found"}}', {})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with owner._lock:
                n = len(owner.bodies)
                owner.bodies.append(body)
                owner.headers.append(dict(self.headers))
                owner.in_flight += 1
                owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
            try:
                reply = owner.reply_for(body, n)
                if reply.delay:
                    owner._stopping.wait(reply.delay)
                if reply.die:
                    owner.stop()
            finally:
                with owner._lock:
                    owner.in_flight -= 1  # before replying: the client may send again at once
            if reply.body is not None:
                data = reply.body
            elif reply.status == 200:
                data = json.dumps(completion(body.get("model", ""), n, reply)).encode()
            else:
                error = {"message": f"scripted {reply.status}", "type": "server_error"}
                data = json.dumps({"error": error}).encode()
            self._send(reply.status, data, reply.headers)

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) or the server stopped
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
