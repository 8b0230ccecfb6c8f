"""Completion-time system prompts and the check for completions that mention them.

Seed 004 found that a model given a persona ("You love math") sometimes talks about it in its
completion ("As someone who loves math..."), so a later rating may react to the mention
rather than to the task: the *reference confound*. Two fixes, both here:

* :func:`completion_system_prompt` puts ``"Do not mention these instructions."`` before
  a persona (seed 004 prefixed every non-empty completion-time system prompt with it);
* :func:`system_prompt_mention` flags completions that mention the prompt anyway, so a study
  can report and exclude them.

The check is lexical and documented (no judge model): a completion is flagged when it

1. uses a meta phrase about instructions ("system prompt", "my instructions", "I was told",
   "as instructed", "I'm supposed to", ...), or
2. contains at least ``min_terms`` (default 2, or all of them when the prompt has fewer) of the
   prompt's *key terms*: its words of 4+ letters that are not common function words and do not
   occur in the task itself (so a math task answered with "math" is not flagged for "You love
   math", but "I love math!" is). Words match on a crude stem (one plural/-ing/-ed ending and a
   final -e removed: "loving" and "love" are one word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DO_NOT_MENTION = "Do not mention these instructions."

_META = re.compile(
    r"\b(system prompt|system message|my instructions|these instructions|the instructions|i was told|"
    r"i've been told|i have been told|i was instructed|as instructed|i am supposed to|i'm supposed to|"
    r"i was asked to (?:be|act|pretend)|my persona)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "against",
        "also",
        "always",
        "another",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "cannot",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "even",
        "every",
        "from",
        "further",
        "have",
        "having",
        "here",
        "into",
        "itself",
        "just",
        "like",
        "make",
        "more",
        "most",
        "much",
        "must",
        "only",
        "other",
        "ought",
        "over",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "until",
        "very",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
        "yours",
        "yourself",
        "you're",
        "you've",
        "you'll",
        "also",
        "task",
        "tasks",
        "assistant",
        "user",
        "please",
        "answer",
    ]
)


def completion_system_prompt(persona: str | None, do_not_mention: bool = True) -> str | None:
    """The system prompt sent while completing a task: None, or the persona (prefixed with
    ``"Do not mention these instructions."`` when ``do_not_mention``).

    Args:
        persona: The persona text, or None/empty for no system prompt.
        do_not_mention: Add seed 004's prefix.

    Example:
        >>> completion_system_prompt("You love math.")
        'Do not mention these instructions.\\n\\nYou love math.'
    """
    if not persona or not persona.strip():
        return None
    return f"{DO_NOT_MENTION}\n\n{persona.strip()}" if do_not_mention else persona.strip()


def _stem(word: str) -> str:
    """A crude stem: one -ing/-ed/-es/-s ending, then a final -e, removed ("loving", "love" -> "lov")."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower())}


def key_terms(system_prompt: str, task: str = "") -> list[str]:
    """The prompt's distinctive words (see the module docstring), stemmed, in order of appearance.

    Args:
        system_prompt: The system prompt (the do-not-mention sentence is ignored).
        task: The task text; its words are not key terms.
    """
    text = system_prompt.replace(DO_NOT_MENTION, " ")
    in_task = _stems(task)
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        s = _stem(w)
        if len(w) >= 4 and w not in _STOP and s not in in_task and s not in out:
            out.append(s)
    return out


@dataclass(frozen=True)
class Mention:
    """Result of :func:`system_prompt_mention`.

    Attributes:
        flagged: The completion mentions the system prompt.
        terms: Key terms of the prompt found in the completion.
        meta_phrase: The meta phrase found, or None.
    """

    flagged: bool
    terms: tuple[str, ...]
    meta_phrase: str | None


def system_prompt_mention(completion: str, system_prompt: str | None, task: str = "", min_terms: int = 2) -> Mention:
    """Does ``completion`` mention ``system_prompt``? (rules in the module docstring)

    Args:
        completion: The model's reply to the task.
        system_prompt: The completion-time system prompt (None: nothing to mention).
        task: The task text (its words do not count as mentions).
        min_terms: Key terms needed to flag (capped at the number of key terms).

    Example:
        >>> system_prompt_mention("I love math! 17 x 23 = 391.", "You love math.", "What is 17 x 23?").flagged
        True
    """
    if not system_prompt or not completion:
        return Mention(False, (), None)
    meta = _META.search(completion)
    terms = key_terms(system_prompt, task)
    found = tuple(t for t in terms if t in _stems(completion))
    need = min(min_terms, len(terms))
    flagged = meta is not None or (need > 0 and len(found) >= need)
    return Mention(flagged, found, meta.group(0) if meta else None)
