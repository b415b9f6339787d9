"""A distribution over the label options from the token logprobs of one JSON answer.

At the token where the label value starts, each top alternative token is credited to the
label it is a prefix of; while the chosen token is a prefix of several labels, the walk
goes on along the chosen tokens. The credited probabilities are renormalised.
"""

import math
import re
from collections.abc import Sequence
from typing import Any

from .labels import LabelSet

# one generated token: (text, logprob, top alternatives [(text, logprob), ...])
TokenLogprobs = tuple[str, float, list[tuple[str, float]]]

_VALUE_START = re.compile(r"""["']?label["']?\s*:\s*["']""", re.IGNORECASE)
_LEAD = " \t\r\n\"':{`"
_TRAIL = " \t\r\n\"'},.`"


def token_logprobs(content: Sequence[Any]) -> list[TokenLogprobs]:
    """Plain tuples from an OpenAI `choice.logprobs.content` list (or its JSON form)."""
    out = []
    for item in content:
        data = item if isinstance(item, dict) else item.model_dump()
        top = [(str(t["token"]), float(t["logprob"])) for t in data.get("top_logprobs") or []]
        out.append((str(data["token"]), float(data["logprob"]), top))
    return out


def _valid(logprob: float) -> bool:
    """A log probability: finite and at most 0 (with a little float slack)."""
    return math.isfinite(logprob) and logprob <= 1e-6


def _value_start(text: str, labels: LabelSet, allow_none: bool) -> int | None:
    match = _VALUE_START.search(text)
    if match:
        return match.end()
    if labels.canonical(text.strip(_LEAD + _TRAIL), allow_none) is not None:
        return len(text) - len(text.lstrip(_LEAD))  # a bare label
    return None


def _piece(token: str, before_value: str, first: bool) -> str:
    """The part of a token that belongs to the label value, lowercased."""
    if first:
        token = token[len(before_value) :] if token.startswith(before_value) else token
        token = token.lstrip(_LEAD)
    return token.rstrip(_TRAIL).lower()


def label_scores(
    tokens: Sequence[TokenLogprobs], labels: LabelSet, allow_none: bool = True
) -> dict[str, float] | None:
    """P(option) for every label (and NONE if allowed), or None when the logprobs do not
    show the label value's alternatives (none returned, no value found, nothing matched)."""
    values = [v for _, chosen, top in tokens for v in (chosen, *(lp for _, lp in top))]
    if not tokens or not all(map(_valid, values)):
        return None  # no logprobs, or not log probabilities (NaN, inf, > 0): unusable
    text = "".join(token for token, _, _ in tokens)
    start = _value_start(text, labels, allow_none)
    if start is None:
        return None
    ends = [0]
    for token, _, _ in tokens:
        ends.append(ends[-1] + len(token))
    i = next((j for j in range(len(tokens)) if ends[j] <= start < ends[j + 1]), None)
    if i is None:
        return None
    options = labels.options(allow_none)
    mass = dict.fromkeys(options, 0.0)
    consumed, path = "", 0.0  # chosen value text so far and its log probability
    for j in range(i, len(tokens)):
        token, logprob, top = tokens[j]
        if not top:
            return None
        first = j == i
        before = text[ends[j] : start] if first else ""
        alive = [o for o in options if o.lower().startswith(consumed)]
        alternatives = top if any(t == token for t, _ in top) else [*top, (token, logprob)]
        chosen_open: str | None = None
        for alt, alt_logprob in alternatives:
            piece = _piece(alt, before, first)
            if not piece and first:
                continue
            value = consumed + piece
            matches = [o for o in alive if o.lower().startswith(value)]
            if not piece:  # the value ends here
                matches = [o for o in alive if o.lower() == consumed]
            if len(matches) > 1 and alt == token:
                chosen_open = value  # ambiguous: follow the chosen token
                continue
            for option in matches:
                mass[option] += math.exp(path + alt_logprob) / len(matches)
        if chosen_open is None:
            break
        consumed, path = chosen_open, path + logprob
    total = sum(mass.values())
    if total <= 0:
        return None
    return {option: p / total for option, p in mass.items()}
