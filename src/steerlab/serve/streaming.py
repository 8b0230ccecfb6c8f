"""Turn a row's growing list of tokens into text deltas that join to exactly the final reply.

The final reply is the decoded tokens cut before the first stop string (and, for chat, stripped
of surrounding whitespace). While tokens arrive, a delta may only contain text that can no
longer change, so :class:`TextStream` holds back:

* the longest tail that is the beginning of a stop string (it may yet become one);
* an incomplete UTF-8 character (the tokenizer decodes it as U+FFFD until its last byte comes);
* for chat, leading whitespace and trailing whitespace (the final reply is stripped).

When the row ends, :meth:`TextStream.finish` returns the rest of the final reply, so the deltas
always join to it.

Example:
    >>> ts = TextStream(tokenizer, stops=["\\nUser:"], strip=True)
    >>> ts.push(token_id)   # '' or a new piece of text
    >>> ts.finish(final_text)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from steerlab.models.sampling import cut_at_stops


class TextStream:
    """Incremental text of one generated row (see the module docstring).

    Args:
        tokenizer: the model's tokenizer.
        stops: the stop strings the row ends at.
        strip: True for chat replies (stripped), False for raw completions.
        eos_ids: token ids that end the row.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], *, strip: bool, eos_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.strip = strip
        self.eos = set(eos_ids)
        self.ids: list[int] = []
        self.sent = ""
        self.done = False

    def _safe(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        text, hit = cut_at_stops(text, self.stops)
        if hit:
            self.done = True
        else:
            hold = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            text = text[: len(text) - hold]
        while text.endswith("\ufffd"):
            text = text[:-1]
        return text.strip() if self.strip else text

    def push(self, token_id: int) -> str:
        """Add one token; return the text that became certain (may be empty)."""
        if self.done:
            return ""
        if token_id in self.eos:
            self.done = True
            return ""
        self.ids.append(token_id)
        safe = self._safe()
        if not safe.startswith(self.sent):  # decoding changed earlier text: wait for the final reply
            return ""
        delta, self.sent = safe[len(self.sent) :], safe
        return delta

    def finish(self, final: str) -> str:
        """The rest of ``final`` (the row's reply) after what was already sent."""
        self.done = True
        if not final.startswith(self.sent):  # cannot happen with a prefix-stable tokenizer
            raise RuntimeError(f"stream sent {self.sent!r}, which does not begin the reply {final!r}")
        delta, self.sent = final[len(self.sent) :], final
        return delta
