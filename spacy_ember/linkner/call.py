"""One chat completion call, its failure classified (timeout, connection, http <code>,
bad response) with whether a retry may help; the client does the retrying."""

from typing import Any, cast

import openai

from .cache import CachedResponse
from .logprobs import token_logprobs


class CallError(Exception):
    """A failed call: `kind` names it; `retryable` for timeouts, connection errors, 429, 5xx."""

    def __init__(self, kind: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind, self.retryable, self.retry_after = kind, retryable, retry_after


def chat_completion(
    client: openai.OpenAI, model: str, messages: list[dict[str, str]], options: dict[str, Any]
) -> CachedResponse:
    """The answer text, token logprobs and token counts. `options` go into the request body
    as they are (extra_body), so the body is exactly what the cache key hashes."""
    try:
        completion = client.chat.completions.create(
            model=model, messages=cast(Any, messages), extra_body=options
        )
    except openai.APITimeoutError as e:
        raise CallError("timeout", True) from e
    except openai.APIConnectionError as e:
        raise CallError("connection", True) from e
    except openai.APIStatusError as e:
        code = e.status_code
        raise CallError(f"http {code}", code == 429 or code >= 500, _retry_after(e)) from e
    except Exception as e:
        raise CallError("bad response", False) from e
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
        raise CallError("bad response", False) from e


def _retry_after(error: openai.APIStatusError) -> float | None:
    """The Retry-After header in seconds, if the server sent one."""
    try:
        return float(error.response.headers.get("retry-after", ""))
    except ValueError:
        return None
