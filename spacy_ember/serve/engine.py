"""The pipeline behind the server: chat requests checked, then generated with EMBER's
streaming in a worker thread (off the event loop), with LinkNER routing beside it; and
/v1/ner texts batched through nlp.pipe. One LM use at a time (see gate.py)."""

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import anyio
from spacy.language import Language

from ..generate.request import check_request, prompt_ids
from ..generate.settings import GenerationSettings
from ..generate.streaming import StreamEvent, generate_with_entities
from ..pipeline.records import doc_records
from .events import StreamState, entity_json
from .gate import LMGate, Ticket
from .routing import StreamRouting, find_router
from .schemas import ChatRequest
from .settings import ServeSettings

THREAD_NAME = "spacy-ember-serve"  # the generation threads (tests look for leftovers)
_DONE = object()


class RequestError(ValueError):
    """A request the server cannot run as asked: a 400 with this message."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class ChatJob:
    """A checked chat request: its messages, how to generate, its prompt length."""

    messages: list[dict[str, str]]
    settings: GenerationSettings
    prompt_tokens: int


@dataclass
class Update:
    """New text and entity events of a running generation."""

    delta: str = ""
    entities: list[dict] = field(default_factory=list)


@dataclass
class Finished:
    """The end of a generation: why it stopped, token counts, its final entities."""

    text: str
    finish_reason: str  # "stop" (end of text) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int
    entities: list[dict]


@dataclass
class GenerationRecord:
    """What a finished (or abandoned) generation did; the last ones are kept."""

    completion_tokens: int
    finish_reason: str | None  # None: the client left before the end


class Engine:
    """Runs one pipeline for the server (settings: see ServeSettings)."""

    def __init__(self, nlp: Language, settings: ServeSettings, component: str = "ember_ner"):
        if component not in nlp.pipe_names:
            raise ValueError(
                f"serve needs a pipeline with a trained '{component}'; this one has "
                f"{nlp.pipe_names}."
            )
        self.nlp, self.settings, self.component = nlp, settings, component
        self.gate = LMGate(settings.queue_size)
        self.router = find_router(nlp)
        workers = self.router.client_settings["max_concurrency"] if self.router else 1
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="spacy-ember-llm")
        self.records: deque[GenerationRecord] = deque(maxlen=100)

    # -- chat -------------------------------------------------------------------
    def chat_job(self, request: ChatRequest) -> ChatJob:
        """Check a chat request against the limits and the LM's context."""
        messages = request.chat()
        if not any(m["content"].strip() for m in messages):
            raise RequestError("The messages have no text.", "messages")
        limit = self.settings.max_tokens
        max_tokens = request.max_completion_tokens or request.max_tokens
        max_tokens = max_tokens or min(self.settings.default_max_tokens, limit)
        if max_tokens > limit:
            raise RequestError(
                f"max_tokens is {max_tokens}; this server allows {limit}.", "max_tokens"
            )
        temperature = request.temperature or 0.0
        settings = GenerationSettings(
            max_new_tokens=max_tokens,
            do_sample=temperature > 0,
            temperature=temperature or 1.0,
            top_p=request.top_p or 1.0,
            seed=request.seed,
        )
        try:
            ids = prompt_ids(self.nlp, messages, settings.chat, self.component)
        except Exception as err:  # a chat template refusing these roles, ...
            raise RequestError(f"The messages cannot be formatted: {err}", "messages") from err
        if len(ids) > self.settings.max_prompt_tokens:
            raise RequestError(
                f"The prompt has {len(ids)} tokens; this server allows "
                f"{self.settings.max_prompt_tokens}.",
                "messages",
            )
        try:
            check_request(self.nlp, self.component, len(ids), settings)
        except ValueError as err:
            raise RequestError(str(err), "max_tokens") from err
        return ChatJob(messages, settings, len(ids))

    async def chat(self, job: ChatJob, ticket: Ticket) -> AsyncIterator[Update | Finished]:
        """Generate, yielding text and entity updates as they happen, then Finished.
        Closing the iterator (the client left) stops the LM within one token."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed: nobody is listening any more
                pass

        routing = StreamRouting(self.nlp, self.router, self.pool, put) if self.router else None
        stop = threading.Event()
        record = GenerationRecord(0, None)
        self.records.append(record)
        state = StreamState()
        answers = 0  # LLM answers received (each routed entity gets exactly one)
        async with self.gate.turn(ticket):
            thread = self._start(job, routing, put, stop)
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, dict):  # an LLM answer
                        answers += 1
                        yield Update(entities=state.event(item))
                        continue
                    event, info = item
                    if event.kind == "token":
                        record.completion_tokens += 1
                        yield Update(*state.piece(event.start_char, event.text))
                    elif event.kind in ("entity", "retract"):
                        change = entity_json(
                            event.kind,
                            event.start_char,
                            event.end_char,
                            event.text,
                            event.label,
                            event.score,
                            **info,
                        )
                        yield Update(entities=state.event(change))
                    else:  # end
                        yield Update(*state.end(event.text, event.doc))
            finally:
                stop.set()
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(thread.join)
        # The LM is free for the next request; the LLM answers still due arrive here.
        for _ in range(len(routing.pending) - answers if routing else 0):
            yield Update(entities=state.event(await queue.get()))
        n = record.completion_tokens
        record.finish_reason = "length" if n >= job.settings.max_new_tokens else "stop"
        yield Finished(
            state.text, record.finish_reason, job.prompt_tokens, n, state.entities.entities()
        )

    def _start(
        self,
        job: ChatJob,
        routing: StreamRouting | None,
        put: Callable[[object], None],
        stop: threading.Event,
    ) -> threading.Thread:
        def emit(event: StreamEvent) -> None:
            put((event, routing.observe(event) if routing else {}))

        def work() -> None:
            try:
                doc = generate_with_entities(
                    self.nlp, job.messages, emit, job.settings, self.component, stop
                )
                if routing is not None and not stop.is_set():
                    routing.finish(doc)
            except BaseException as err:  # re-raised on the event loop
                put(err)
            finally:
                put(_DONE)

        thread = threading.Thread(target=work, name=THREAD_NAME, daemon=True)
        thread.start()
        return thread

    # -- ner --------------------------------------------------------------------
    def check_texts(self, texts: list[str]) -> None:
        if len(texts) > self.settings.max_texts:
            raise RequestError(
                f"{len(texts)} texts; this server takes at most {self.settings.max_texts} "
                "per request.",
                "texts",
            )
        for i, text in enumerate(texts):
            if len(text) > self.settings.max_text_chars:
                raise RequestError(
                    f"texts[{i}] has {len(text)} characters; this server takes at most "
                    f"{self.settings.max_text_chars}.",
                    "texts",
                )

    async def ner(self, texts: list[str], ticket: Ticket) -> list[list[dict]]:
        """Each text's entities (nlp.pipe in a worker thread, which runs to its end)."""
        size = self.settings.ner_batch_size
        async with self.gate.turn(ticket):
            docs = await anyio.to_thread.run_sync(
                lambda: list(self.nlp.pipe(texts, batch_size=size))
            )
        return [doc_records(doc) for doc in docs]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
