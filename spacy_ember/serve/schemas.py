"""The request bodies the server accepts: OpenAI's chat completion request (the fields
spacy-ember uses; unknown fields are ignored, as OpenAI-compatible servers do) and
spacy-ember's /v1/ner. Strict types: a string where a number belongs is a 400."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Body):
    """One part of a message's content list; only text parts are read."""

    type: str
    text: str = ""


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if part.type == "text")


class StreamOptions(_Body):
    include_usage: bool = False


class ChatRequest(_Body):
    """POST /v1/chat/completions. temperature None or 0: greedy; above 0: sampling."""

    model: str | None = None  # any name: the server serves one pipeline
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # OpenAI's newer name
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None

    def chat(self) -> list[dict[str, str]]:
        """The messages as the chat template takes them."""
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class NERRequest(_Body):
    """POST /v1/ner: texts in, their entities out (batched through nlp.pipe)."""

    texts: list[str] = Field(min_length=1)
