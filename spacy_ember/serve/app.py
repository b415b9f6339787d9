"""The ASGI app (FastAPI): the page, OpenAI's chat completions with entity events, /v1/ner,
/v1/models, /health. Errors are OpenAI-shaped JSON: {"error": {"message", "type", ...}}."""

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from importlib.resources import files

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from spacy.language import Language
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from ..about import __version__
from ..workflow.visualize import LABEL_COLORS
from .engine import ChatJob, Engine, Finished, RequestError
from .gate import Busy, Ticket
from .schemas import ChatRequest, NERRequest
from .settings import ServeSettings

PAGE = "static/index.html"


def error_response(status: int, message: str, kind: str, param=None, code=None, headers=None):
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    first = err.errors()[0] if err.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    where = ".".join(loc) or None
    message = first.get("msg", "Invalid request")
    return (f"{where}: {message}" if where else message), where


def create_app(nlp: Language, settings: ServeSettings | None = None) -> FastAPI:
    """The server for one pipeline (with ember_ner; linkner_router if it has one)."""
    settings = settings or ServeSettings()
    engine = Engine(nlp, settings)
    app = FastAPI(
        title="spacy-ember", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.engine = engine
    app.router.add_event_handler("shutdown", engine.close)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        message, param = _validation_message(err)
        return error_response(400, message, "invalid_request_error", param)

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, err: RequestError):
        return error_response(400, str(err), "invalid_request_error", err.param)

    @app.exception_handler(Busy)
    async def busy(request: Request, err: Busy):
        headers = {"Retry-After": str(err.retry_after)}
        return error_response(503, str(err), "server_busy", headers=headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception):
        return error_response(500, f"Internal error: {type(err).__name__}: {err}", "server_error")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        kind = "authentication_error" if err.status_code == 401 else "invalid_request_error"
        return error_response(err.status_code, str(err.detail), kind, headers=err.headers)

    def check_key(request: Request) -> None:
        """With an API key set: `Authorization: Bearer <key>` (or ?api_key= for the page)."""
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else None
        given = given or request.query_params.get("api_key") or ""
        if not secrets.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(401, "Missing or wrong API key (Authorization: Bearer <key>).")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": settings.model_name, "queued": engine.gate.waiting}

    api = APIRouter(dependencies=[Depends(check_key)])

    @api.get("/", response_class=HTMLResponse)
    async def page() -> str:
        html = files("spacy_ember.serve").joinpath(PAGE).read_text(encoding="utf8")
        return html.replace("__LABEL_COLORS__", json.dumps(LABEL_COLORS)).replace(
            "__MODEL__", settings.model_name
        )

    @api.get("/v1/models")
    async def models() -> dict:
        model = {
            "id": settings.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "spacy-ember",
        }
        return {"object": "list", "data": [model]}

    @api.post("/v1/ner")
    async def ner(body: NERRequest) -> dict:
        engine.check_texts(body.texts)
        entities = await engine.ner(body.texts, engine.gate.admit())
        data = [{"text": t, "entities": e} for t, e in zip(body.texts, entities)]
        return {"object": "list", "model": settings.model_name, "data": data}

    @api.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        job = engine.chat_job(body)
        ticket = engine.gate.admit()
        reply = _Reply(settings.model_name)
        if not body.stream:
            try:
                return reply.completion(await _last(engine.chat(job, ticket)))
            finally:
                ticket.release()
        usage = bool(body.stream_options and body.stream_options.include_usage)
        events = reply.chunks(engine, job, ticket, usage)
        return EventSourceResponse(
            events, background=BackgroundTask(ticket.release), ping=15, sep="\n"
        )

    app.include_router(api)
    return app


async def _last(updates: AsyncIterator) -> Finished:
    """The Finished of a generation run to its end (non-streaming requests)."""
    done = [u async for u in updates if isinstance(u, Finished)]
    return done[-1]


class _Reply:
    """OpenAI's response shapes for one request, entities as an extra field."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created, self.model = int(time.time()), model

    def _base(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    @staticmethod
    def _usage(done: Finished) -> dict:
        total = done.prompt_tokens + done.completion_tokens
        return {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": total,
        }

    def completion(self, done: Finished) -> dict:
        message = {"role": "assistant", "content": done.text}
        choice = {"index": 0, "message": message, "finish_reason": done.finish_reason}
        body = self._base("chat.completion")
        body.update(choices=[{**choice, "logprobs": None}], usage=self._usage(done))
        body["entities"] = done.entities
        return body

    def chunk(self, delta: dict, finish_reason=None, entities=None) -> dict:
        body = self._base("chat.completion.chunk")
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        body["choices"] = [choice]
        if entities:
            body["entities"] = entities
        return body

    async def chunks(
        self, engine: Engine, job: ChatJob, ticket: Ticket, usage: bool
    ) -> AsyncIterator[dict]:
        """SSE events: a role chunk, text and entity chunks, the finish chunk, [DONE]."""
        try:
            yield {"data": json.dumps(self.chunk({"role": "assistant", "content": ""}))}
            async for update in engine.chat(job, ticket):
                if isinstance(update, Finished):
                    yield {"data": json.dumps(self.chunk({}, update.finish_reason))}
                    if usage:
                        last = {**self._base("chat.completion.chunk"), "choices": []}
                        yield {"data": json.dumps({**last, "usage": self._usage(update)})}
                    continue
                if update.delta or update.entities:
                    delta = {"content": update.delta} if update.delta else {}
                    yield {"data": json.dumps(self.chunk(delta, entities=update.entities))}
            yield {"data": "[DONE]"}
        except Exception as err:  # the stream has started: report it in the stream
            error = {"message": f"{type(err).__name__}: {err}", "type": "server_error"}
            yield {"data": json.dumps({"error": error})}
        finally:
            ticket.release()
