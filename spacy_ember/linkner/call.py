"""One chat completion call, its failure classified as timeout, connection, http <code>
or bad response; the openai client has already retried what a retry may fix."""

from typing import TYPE_CHECKING, Any, cast

from .cache import CachedResponse
from .logprobs import token_logprobs

if TYPE_CHECKING:
    import openai


class CallError(Exception):
    """A failed call; `kind` names how it failed (it becomes `Answer.error`)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def chat_completion(
    client: "openai.OpenAI", model: str, messages: list[dict[str, str]], options: dict[str, Any]
) -> CachedResponse:
    """The answer text, token logprobs and token counts. `options` go into the request body
    as they are (extra_body), so the body is exactly what the cache key hashes."""
    import openai

    try:
        completion = client.chat.completions.create(
            model=model, messages=cast(Any, messages), extra_body=options
        )
    except openai.APITimeoutError as e:
        raise CallError("timeout") from e
    except openai.APIConnectionError as e:
        raise CallError("connection") from e
    except openai.APIStatusError as e:
        raise CallError(f"http {e.status_code}") from e
    except Exception as e:
        raise CallError("bad response") from e
    try:
        choice, usage = completion.choices[0], completion.usage
        content = choice.logprobs.content if choice.logprobs else None
        return CachedResponse(
            text=choice.message.content or "",
            logprobs=token_logprobs(content) if content else None,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
    except Exception as e:
        raise CallError("bad response") from e
