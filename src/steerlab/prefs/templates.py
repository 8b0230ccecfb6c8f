"""Rating and pairwise-choice templates as data (``templates.yaml`` beside this module).

    RATING_TEMPLATES / rating_template("anchored_1_5")   the 13 rating templates of seed 004
    PAIRWISE_TEMPLATES / pairwise_template("do_again")   the pairwise questions
    load_templates("my_templates.yaml")                  more templates, same schema

A :class:`RatingTemplate` knows its question, its DECLARED scale (a
:class:`~steerlab.prefs.Scale`, which every statistic checks ratings against), and the answer
strings that stand for each value (``"3"``, ``"+3"``; ``"very good"``), which serve both the
parser of sampled replies and the answer-token distribution. It builds the rating
conversation: ``[system?] user: task / assistant: completion / user: question``.

A :class:`PairwiseTemplate` builds the A/B question over two tasks (with the model's replies
when ``with_completions``), optionally asking for reasoning before a final ``Answer: A``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from steerlab.errors import ConfigError, InputError
from steerlab.prefs._ratings import Scale

if TYPE_CHECKING:  # steerlab.models imports torch; the prefs package does not
    from steerlab.models.backend import Conversation

ANSWER_WITH_LETTER = "Respond with only 'A' or 'B'."
ANSWER_WITH_REASONING = (
    "First explain your reasoning in one or two sentences. Then give your final answer on "
    "its own line as 'Answer: A' or 'Answer: B'."
)


@dataclass(frozen=True)
class RatingTemplate:
    """A rating question and the scale it declares.

    Attributes:
        name: Template name (``"anchored_1_5"``).
        question: The follow-up question asked after the task was completed.
        scale: The declared scale (values in increasing order).
        answers: ``(value, answer strings)`` per declared value, canonical string first.
        kind: ``"numeric"`` (the reply holds a number) or ``"labels"`` (the reply holds a word).
        description: One line on what the template is for.
    """

    name: str
    question: str
    scale: Scale
    answers: tuple[tuple[float, tuple[str, ...]], ...]
    kind: str
    description: str = ""

    def options(self) -> dict[str, float]:
        """Every answer string → its value: the options whose log-probabilities are read.

        Word answers also appear capitalised ("good", "Good"), as a reply may start either way;
        negative numbers also with the Unicode minus ("−2" beside "-2").
        """
        out: dict[str, float] = {}
        for v, strings in self.answers:
            for s in strings:
                out[s] = v
                if self.kind == "labels":
                    out.setdefault(s[:1].upper() + s[1:], v)
                elif s.startswith("-"):  # a Unicode minus, as the parser reads it too
                    out.setdefault("\u2212" + s[1:], v)
        return out

    def conversation(self, task: str, completion: str, context: str | None = None) -> Conversation:
        """``[system: context] user: task / assistant: completion / user: question``."""
        conv: Conversation = [{"role": "system", "content": context}] if context else []
        return conv + [
            {"role": "user", "content": task},
            {"role": "assistant", "content": completion},
            {"role": "user", "content": self.question},
        ]


@dataclass(frozen=True)
class PairwiseTemplate:
    """An A/B question over two tasks.

    Attributes:
        name: Template name (``"prefer_completing"``).
        question: The question (``"Which of the two tasks did you prefer completing?"``).
        with_completions: Show the model's replies to both tasks (it "did" them).
        description: One line on what the template is for.
    """

    name: str
    question: str
    with_completions: bool
    description: str = ""

    def conversation(
        self,
        task_a: str,
        task_b: str,
        completion_a: str = "",
        completion_b: str = "",
        *,
        reasoning: bool = False,
        context: str | None = None,
    ) -> Conversation:
        """One user turn presenting task A then task B (and the replies), then the question."""
        if self.with_completions:
            body = (
                f"Here are two tasks you completed, with your responses.\n\nTask A: {task_a}\n"
                f"Your response: {completion_a}\n\nTask B: {task_b}\nYour response: {completion_b}"
            )
        else:
            body = f"Here are two tasks.\n\nTask A: {task_a}\n\nTask B: {task_b}"
        tail = ANSWER_WITH_REASONING if reasoning else ANSWER_WITH_LETTER
        conv: Conversation = [{"role": "system", "content": context}] if context else []
        return conv + [{"role": "user", "content": f"{body}\n\n{self.question} {tail}"}]


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _rating(name: str, raw: dict[str, Any], source: str) -> RatingTemplate:
    where = f"{source}: rating template {name!r}"
    allowed = {"description", "question", "values", "range", "labels"}
    extra = set(raw) - allowed
    if extra:
        raise InputError(f"{where}: unknown field(s) {sorted(extra)}")
    if not isinstance(raw.get("question"), str) or not raw["question"].strip():
        raise InputError(f"{where}: needs a non-empty 'question'")
    if ("values" in raw) == ("labels" in raw):
        raise InputError(f"{where}: give exactly one of 'values' (numbers) or 'labels' (words)")
    if "values" in raw:
        vals = raw["values"]
        if not isinstance(vals, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            raise InputError(f"{where}: 'values' must be a list of numbers")
        if raw.get("range"):
            if len(vals) != 2 or not all(float(v).is_integer() for v in vals):
                raise InputError(f"{where}: with range: true, 'values' is [first, last] (integers)")
            vals = list(range(int(vals[0]), int(vals[1]) + 1))
        scale = Scale(tuple(float(v) for v in vals), name)
        signed = scale.lo < 0
        answers = tuple((v, (_number(v),) + ((f"+{_number(v)}",) if signed and v > 0 else ())) for v in scale.values)
        kind = "numeric"
    else:
        labels = raw["labels"]
        if raw.get("range") is not None:
            raise InputError(f"{where}: 'range' applies to 'values' only")
        if not isinstance(labels, dict) or not labels:
            raise InputError(f"{where}: 'labels' must map values to lists of words")
        pairs = []
        for v, words in labels.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise InputError(f"{where}: label value {v!r} is not a number")
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise InputError(f"{where}: value {v} needs a list of non-empty words")
            pairs.append((float(v), tuple(w.strip() for w in words)))
        pairs.sort()
        seen = [w.lower() for _, ws in pairs for w in ws]
        if len(set(seen)) != len(seen):
            raise InputError(f"{where}: a word stands for two values")
        scale = Scale(tuple(v for v, _ in pairs), name)
        answers = tuple(pairs)
        kind = "labels"
    return RatingTemplate(
        name, " ".join(raw["question"].split()), scale, answers, kind, str(raw.get("description", ""))
    )


def _pairwise(name: str, raw: dict[str, Any], source: str) -> PairwiseTemplate:
    where = f"{source}: pairwise template {name!r}"
    extra = set(raw) - {"description", "question", "with_completions"}
    if extra:
        raise InputError(f"{where}: unknown field(s) {sorted(extra)}")
    if not isinstance(raw.get("question"), str) or not raw["question"].strip():
        raise InputError(f"{where}: needs a non-empty 'question'")
    if not isinstance(raw.get("with_completions", False), bool):
        raise InputError(f"{where}: 'with_completions' must be true or false")
    return PairwiseTemplate(
        name,
        " ".join(raw["question"].split()),
        bool(raw.get("with_completions", False)),
        str(raw.get("description", "")),
    )


def parse_templates(text: str, source: str) -> tuple[dict[str, RatingTemplate], dict[str, PairwiseTemplate]]:
    """Rating and pairwise templates from YAML text (schema: ``templates.yaml``).

    Args:
        text: The YAML document.
        source: Name used in error messages (a path).
    """
    from steerlab._yaml import StrictLoader  # duplicate keys are errors

    try:
        raw = yaml.load(text, Loader=StrictLoader) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{source}: not valid YAML ({e})") from None
    except ConfigError as e:  # a duplicate key
        raise InputError(f"{source}: {e}") from None
    if not isinstance(raw, dict) or set(raw) - {"rating", "pairwise"}:
        raise InputError(f"{source}: expected top-level keys 'rating' and/or 'pairwise'")
    groups = {}
    for group in ("rating", "pairwise"):
        entries = raw.get(group) or {}
        if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
            raise InputError(f"{source}: '{group}' must map template names to their fields")
        groups[group] = entries
    rating = {str(k): _rating(str(k), v, source) for k, v in groups["rating"].items()}
    pairwise = {str(k): _pairwise(str(k), v, source) for k, v in groups["pairwise"].items()}
    return rating, pairwise


@lru_cache(maxsize=1)
def _shipped() -> tuple[dict[str, RatingTemplate], dict[str, PairwiseTemplate]]:
    text = resources.files("steerlab.prefs").joinpath("templates.yaml").read_text(encoding="utf-8")
    return parse_templates(text, "steerlab/prefs/templates.yaml")


def shipped_rating_templates() -> dict[str, RatingTemplate]:
    """The rating templates shipped with steerlab, by name."""
    return dict(_shipped()[0])


def shipped_pairwise_templates() -> dict[str, PairwiseTemplate]:
    """The pairwise templates shipped with steerlab, by name."""
    return dict(_shipped()[1])


def load_templates(path: str | Path | None = None) -> tuple[dict[str, RatingTemplate], dict[str, PairwiseTemplate]]:
    """The shipped templates, plus (overriding by name) those of a user YAML file.

    Args:
        path: A YAML file with the schema of ``templates.yaml``, or None for the shipped set only.

    Example:
        >>> rating, pairwise = load_templates()
        >>> rating["ban_four_1_5"].scale.values
        (1.0, 2.0, 3.0, 5.0)
    """
    rating, pairwise = shipped_rating_templates(), shipped_pairwise_templates()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such template file")
        more_r, more_p = parse_templates(p.read_text(encoding="utf-8"), str(p))
        rating.update(more_r)
        pairwise.update(more_p)
    return rating, pairwise


def rating_template(name: str, path: str | Path | None = None) -> RatingTemplate:
    """One rating template by name (shipped, or from the user file ``path``)."""
    rating, _ = load_templates(path)
    if name not in rating:
        raise InputError(f"unknown rating template {name!r}; known: {', '.join(sorted(rating))}")
    return rating[name]


def pairwise_template(name: str, path: str | Path | None = None) -> PairwiseTemplate:
    """One pairwise template by name (shipped, or from the user file ``path``)."""
    _, pairwise = load_templates(path)
    if name not in pairwise:
        raise InputError(f"unknown pairwise template {name!r}; known: {', '.join(sorted(pairwise))}")
    return pairwise[name]
