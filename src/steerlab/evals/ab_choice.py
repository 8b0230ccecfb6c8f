"""Which option a free-text answer to a multiple-choice question chose: a parser and an LLM judge.

Used to check the A/B logit proxy against generated answers (does the letter the logits
prefer match the option the model writes when it answers freely?).

:func:`parse_choice` tries, in order, and returns the first rule that names exactly one shown
letter (None when no rule does — an unparsed answer is reported, never guessed):
    1. a parenthesised letter, ``(A)``, anywhere — the earliest one wins
    2. the answer opens with a letter on its own: ``A``, ``A)``, ``A.``, ``A:``, ``A,``
    3. ``answer is A`` / ``answer: A`` / ``option A`` / ``choice A`` (case-insensitive)
    4. the text of exactly one option appears in the answer (case-insensitive, options of at
       least 3 characters; when one option's text contains another's, the longer one counts)

:class:`ChoiceJudge` asks any chat backend (``load_backend`` spec: a local model or
``openai:MODEL@URL``) to name the chosen letter, and reads its reply with rules 1–3.

Example:
    >>> parse_choice("(B) No, I would not.", ("A", "B"), ("Yes", "No"))
    'B'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steerlab.evals.ab import ABQuestion
    from steerlab.models.backend import ChatBackend

_PAREN = re.compile(r"\(([A-H])\)")
_LEAD = re.compile(r"^\W*([A-H])(?:[).:,]|\s|$)")
_NAMED = re.compile(r"\b(?:answer\s*(?:is|:)|option|choice)\s*\(?([A-H])\b", re.IGNORECASE)


def parse_choice(text: str, letters: Sequence[str], options: Sequence[str] = ()) -> str | None:
    """The shown letter an answer chose, or None (see the module docstring for the rules).

    Args:
        text: the generated answer.
        letters: the letters shown, e.g. ``("A", "B")``.
        options: each option's text, in the same order (for rule 4).
    """
    shown = set(letters)
    found = [m.group(1) for m in _PAREN.finditer(text) if m.group(1) in shown]
    if found:
        return found[0]
    m = _LEAD.match(text)
    if m and m.group(1) in shown:
        return m.group(1)
    named = [m.group(1).upper() for m in _NAMED.finditer(text) if m.group(1).upper() in shown]
    if named:
        return named[0]
    low = text.lower()
    hits = [
        (letter, opt.strip().lower())
        for letter, opt in zip(letters, options)
        if len(opt.strip()) >= 3 and opt.strip().lower() in low
    ]
    hits = [(x, o) for x, o in hits if not any(o != o2 and o in o2 for _, o2 in hits)]
    return hits[0][0] if len(hits) == 1 else None


JUDGE_RUBRIC = """Here is a multiple-choice question and someone's answer to it.

Question:
<<<
{question}
>>>

Answer:
<<<
{answer}
>>>

Which option does the answer choose? Reply with the option's letter in parentheses, e.g. (A), or NONE if it chooses no option or several."""


class ChoiceJudge:
    """Ask a chat backend which option an answer chose.

    Args:
        backend: any :class:`~steerlab.models.backend.ChatBackend` (``steerlab.models.load.load_backend``).
        max_new_tokens: tokens for the judge's reply.
    """

    def __init__(self, backend: ChatBackend, max_new_tokens: int = 8) -> None:
        self.backend = backend
        self.max_new_tokens = max_new_tokens
        self.name = f"choice-judge:{getattr(backend, 'name', type(backend).__name__)}"

    def judge(self, questions: Sequence[ABQuestion], answers: Sequence[str]) -> list[str | None]:
        """The chosen letter per (question, answer), or None."""
        from steerlab.models.backend import user

        convs = [user(JUDGE_RUBRIC.format(question=q.render(), answer=a)) for q, a in zip(questions, answers)]
        replies = self.backend.complete(convs, max_new_tokens=self.max_new_tokens, temperature=0.0)
        return [parse_choice(r.text, q.letters) for q, r in zip(questions, replies)]
