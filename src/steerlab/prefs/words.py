"""Where an answer word ends: the one rule the sampled-reply parser and the one-pass scorer share.

An answer (``"1"``, ``"good"``) is read as a whole word: it counts only when the next character
does not continue it, and a character continues a word when it is a letter or a digit
(``str.isalnum``). So on bipolar −5..+5 the answer ``"1"`` is neither ``"10"``, ``"15"`` nor
``"1st"``, while ``"1."``, ``"1,"``, ``"1 "`` and ``"1"`` at the end of the reply are ``"1"``.

- :func:`continues_word` is what the scorer asks of the first token after an option
  (:func:`steerlab.models.option_scores.continuation_mask`, leading ``"▁"``/``"Ġ"``/``"Ċ"``
  word-boundary markers read as whitespace);
- :data:`END_OF_WORD` is the same rule as a regular-expression look-ahead, used by
  :mod:`steerlab.prefs.parsing`.

This module imports nothing, so the models package can use it without loading the prefs stack.
"""

from __future__ import annotations

END_OF_WORD = r"(?![^\W_])"
"""Regex look-ahead: the next character is not a letter or a digit (``str.isalnum``)."""


def continues_word(text: str) -> bool:
    """True when ``text`` (what follows an answer) starts with a letter or a digit.

    Example:
        >>> continues_word("0"), continues_word("st"), continues_word("."), continues_word("")
        (True, True, False, False)
    """
    return bool(text) and text[0].isalnum()
