"""Print generated text as it streams, with entities coloured as they are recognised."""

import os
import sys
from typing import TextIO

from ..workflow.visualize import LABEL_COLORS
from .streaming import StreamEvent

FALLBACK_COLOR = "#e9c46a"


def _ansi(hex_color: str) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"\x1b[1;38;2;{r};{g};{b}m"


class LivePrinter:
    """Consumes stream events and writes the text with a one-piece delay: a piece typed
    as an entity is held back until the span it may belong to is decided, then printed
    coloured (with its label) if it became an entity, plain otherwise."""

    def __init__(self, out: TextIO = sys.stdout, color: bool | None = None) -> None:
        self.out = out
        if color is None:
            color = out.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        self.text = ""
        self.printed = 0
        self.entities: dict[tuple[int, int], str] = {}

    def __call__(self, event: StreamEvent) -> None:
        if event.kind == "token":
            self.text = self.text[: event.start_char] + event.text
            if event.label in (None, "O"):
                self.flush(event.end_char)
        elif event.kind == "entity":
            self.entities[(event.start_char, event.end_char)] = event.label or ""
        elif event.kind == "retract":
            self.entities.pop((event.start_char, event.end_char), None)
        elif event.kind == "end":
            self.text = event.text
            self.flush(len(self.text))
            self.out.write("\n")
        self.out.flush()

    def flush(self, upto: int) -> None:
        """Print text[printed:upto], colouring the parts inside entities."""
        pos = self.printed
        for (start, end), label in sorted(self.entities.items()):
            if end <= pos or start >= upto:
                continue
            self.out.write(self.text[pos : max(start, pos)])
            self.out.write(self._paint(self.text[max(start, pos) : min(end, upto)], label))
            pos = min(end, upto)
            if end <= upto:
                self.out.write(self._paint(f"[{label}]", label, dim=True))
        self.out.write(self.text[pos:upto])
        self.printed = max(self.printed, upto)

    def _paint(self, text: str, label: str, dim: bool = False) -> str:
        if not self.color:
            return text
        style = "\x1b[2m" if dim else _ansi(LABEL_COLORS.get(label, FALLBACK_COLOR))
        return f"{style}{text}\x1b[0m"
