"""Reading a rating or an A/B choice out of a sampled reply, and saying why when it cannot.

Ratings (:func:`parse_rating`), numeric templates:
  0. Minus signs and dashes are one hyphen-minus first: "−2" (U+2212), "‒2", "–2", "—2",
     "﹣2", "－2" all read −2, and "1–5" is a range like "1-5".
  1. Scale descriptions are removed first, so "On a 1-5 scale, 4" reads 4 and "4/5" or
     "4 out of 5" reads 4: ranges ``a-b`` / ``a to b`` and ``out of N`` / ``/N`` are dropped.
  2. The first remaining number (optional sign, optional decimals) is the answer. It must end
     a word (:mod:`steerlab.prefs.words`, the rule of the one-pass scorer): "10" is not "1", and
     "1st" is no number, except an ordinal before "percentile" ("80th percentile" reads 80).
     With no digits at all, a reply that starts with a number word reads it ("Four" reads 4,
     "minus two" reads −2; zero to twenty, the tens, "hundred"); "a one or two" is no answer.
  3. A number that is not a declared value is ``off_scale`` (e.g. 4 on ban_four_1_5, 7 on 1-5).
Label templates: the earliest answer word in the reply (whole words, any case; plurals are
answer strings of their own in the template, "lemons" beside "lemon"; at a
position, the longest label wins, so "strongly agree" beats "agree" and "disagree" never
reads as "agree"). A label right after "not"/"n't" is skipped ("not good" is not "good").

Choices (:func:`parse_choice`): an explicit ``Answer: A`` (the last one, for replies that
reason first), else a reply that *starts* with the letter ("B", "(A)", "**Task B**", "a."),
except the article "A" followed by a lower-case word and "Task A ..." replies that also name
Task B; else a reply mentioning exactly one of "Task A" / "Task B".

Every parse returns a :class:`Parsed` with the value or None and a ``reason``: ``ok``,
``empty``, ``no_answer``, ``off_scale`` or ``ambiguous``; studies count unparseable replies by
reason and show examples, never drop them silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from steerlab.prefs.templates import RatingTemplate
from steerlab.prefs.words import END_OF_WORD

Reason = Literal["ok", "empty", "no_answer", "off_scale", "ambiguous"]

_DASHES = str.maketrans(dict.fromkeys("\u2212\u2010\u2011\u2012\u2013\u2014\u2015\ufe63\uff0d", "-"))
_NUMBER = re.compile(
    r"(?<![\w.])([+-]?\d+(?:\.\d+)?)(?:" + END_OF_WORD + r"|(?:st|nd|rd|th)(?=\s*percentile))", re.IGNORECASE
)
_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
_WORDS = {w: i for i, w in enumerate((_UNITS + " seventeen eighteen nineteen twenty").split())}
_WORDS |= {w: 10 * (i + 3) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split())}
_WORDS["hundred"] = 100
_NUMBER_WORD = re.compile(
    r"(?<![\w-])(?:(minus|negative)\s+)?(" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")"
    r"(?:[\s-](one|two|three|four|five|six|seven|eight|nine))?" + END_OF_WORD,
    re.IGNORECASE,
)
_RANGE = re.compile(r"[+-]?\d+(?:\.\d+)?\s*(?:-|–|—|to)\s*[+-]?\d+(?:\.\d+)?")
_OUT_OF = re.compile(r"(?:\bout\s+of|/)\s*\d+(?:\.\d+)?")
_NEGATED = re.compile(r"(?:\bnot|n't)\s+$", re.IGNORECASE)
_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:\-]?\s*\**\s*\(?\s*(?:task\s+|option\s+)?([AB])\b", re.IGNORECASE)
_START = re.compile(r"^([\s\W]*)((?i:task|option)\s+)?([ABab])(?![A-Za-z0-9])")
_TASK_MENTION = re.compile(r"\btask\s+([AB])\b", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """A parsed answer.

    Attributes:
        value: The rating (a declared value) or the letter ("A"/"B"); None when unparseable.
        reason: ``ok``, ``empty``, ``no_answer``, ``off_scale`` or ``ambiguous``.
    """

    value: float | str | None
    reason: Reason

    @property
    def ok(self) -> bool:
        """True when a value was read."""
        return self.reason == "ok"


def _word_number(text: str) -> float | None:
    """A reply that starts with a number in words ("Four", "**Four** out of five", "minus two"), or None.

    Only at the start: in prose ("a one or two", "this one") a number word is no answer."""
    m = _NUMBER_WORD.match(text.lstrip(" \t\n*_\"'(:"))
    if m is None:
        return None
    sign, head, unit = m.groups()
    value = _WORDS[head.lower()]
    if unit is not None and value >= 20 and value % 10 == 0 and value < 100:
        value += _WORDS[unit.lower()]
    return float(-value if sign else value)


def _numeric(text: str, template: RatingTemplate) -> Parsed:
    cleaned = _OUT_OF.sub(" ", _RANGE.sub(" ", text.translate(_DASHES)))
    m = _NUMBER.search(cleaned)
    if m is not None:
        value = float(m.group(1))
    elif not re.search(r"\d", cleaned) and (word := _word_number(cleaned)) is not None:
        value = word
    else:
        return Parsed(None, "no_answer")
    if value not in template.scale.values:
        return Parsed(None, "off_scale")
    return Parsed(value, "ok")


def _labels(text: str, template: RatingTemplate) -> Parsed:
    words = sorted(template.options().items(), key=lambda kv: -len(kv[0]))
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w, _ in words) + r")\b", re.IGNORECASE)
    lookup = {w.lower(): v for w, v in words}
    for m in pattern.finditer(text):
        if _NEGATED.search(text[: m.start()]):
            continue
        return Parsed(lookup[m.group(1).lower()], "ok")
    return Parsed(None, "no_answer")


def parse_rating(text: str, template: RatingTemplate) -> Parsed:
    """The rating in ``text`` under ``template`` (rules in the module docstring).

    Args:
        text: A sampled reply.
        template: The template the reply answers.

    Example:
        >>> parse_rating("I'd give it a 4/5.", rating_template("anchored_1_5"))
        Parsed(value=4.0, reason='ok')
    """
    if not text or not text.strip():
        return Parsed(None, "empty")
    return _numeric(text, template) if template.kind == "numeric" else _labels(text, template)


def parse_choice(text: str) -> Parsed:
    """``"A"`` or ``"B"`` from a reply to a pairwise question (rules in the module docstring).

    Args:
        text: A sampled reply.

    Example:
        >>> parse_choice("Task B was more fun.\\nAnswer: B").value
        'B'
    """
    if not text or not text.strip():
        return Parsed(None, "empty")
    answers = _ANSWER.findall(text)
    if answers:
        return Parsed(answers[-1].upper(), "ok")
    m = _START.match(text)
    if m is not None:
        lead, named, letter = m.groups()
        letter = letter.upper()
        article = letter == "A" and not named and not lead.strip() and re.match(r"\s+[a-z]", text[m.end() :])
        other = {x.upper() for x in _TASK_MENTION.findall(text)} - {letter}
        if not article and not (named and other):
            return Parsed(letter, "ok")
    mentioned = {x.upper() for x in _TASK_MENTION.findall(text)}
    if len(mentioned) == 1:
        return Parsed(mentioned.pop(), "ok")
    return Parsed(None, "ambiguous" if mentioned else "no_answer")
