"""The spacy-ember app on a loopback uvicorn server in a background thread, for tests."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from spacy_ember.serve.app import create_app
from spacy_ember.serve.settings import ServeSettings


@contextmanager
def running(nlp, **settings) -> Iterator[tuple[str, object]]:
    """(base URL, the app's Engine) of a server for `nlp`; stopped after."""
    app = create_app(nlp, ServeSettings(port=0, **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app.state.engine
    finally:
        server.should_exit = True
        thread.join(30)
