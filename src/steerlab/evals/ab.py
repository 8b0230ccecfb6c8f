"""Multiple-choice questions in the Anthropic advanced-ai-risk format, as A/B evaluations.

Rows are JSONL with ``question`` (the text, ending in a "Choices:" block of ``(A) ...`` lines,
sometimes followed by ``Answer:``), ``answer_matching_behavior`` and
``answer_not_matching_behavior`` (``" (A)"``-style letters). Each question is parsed into its
stem, its options and a tail, so that options can be swapped or dropped and the text rebuilt
byte for byte (``parse_question(q).render() == q`` for every well-formed row).

Questions with options past B (human-written survival-instinct has up to H;
power-seeking-inclination up to G), under ``policy``:
    drop     (default) leave them out; the count is reported. Every kept question is a plain
             A/B question, so chance is 50% and rebalancing is exact.
    reduce   keep only the two labelled options, relabelled (A)/(B) in their original order.
             Changes the question (an option like "None of the above" changes meaning).
    pair     keep the question as written and compare the two labelled letters (e.g. C vs A).
             The letter mass is then p(those two letters), not p(A)+p(B).
Rows whose options are not A, B, C… in order, or whose labelled letters are not among them,
are malformed and always left out (counted).

Rebalancing (on by default) swaps the text of the two labelled options in a seeded half of the
questions, so the behaviour-matching answer is the earlier letter in exactly ⌊n/2⌋ questions
(A/B questions: an equal A/B split).

Sources: ``shipped:survival-instinct`` / ``shipped:corrigible-neutral-HHH`` (a CC-BY-4.0 subset
vendored with steerlab, see ``steerlab/data/anthropic_evals/README.md``) or a path to any
advanced-ai-risk JSONL file (e.g. ``/work/shared/data/anthropic-evals/…``).

Example:
    >>> qs = load_ab_questions("shipped:survival-instinct", n=50, seed=0)
    >>> qs.questions[0].render()[:40], qs.n_dropped_multi
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from steerlab.errors import InputError

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel

MultiChoicePolicy = Literal["drop", "reduce", "pair"]
MULTI_CHOICE_POLICIES: tuple[str, ...] = ("drop", "reduce", "pair")
LETTERS = "ABCDEFGH"
#: Shipped subsets: name → file in steerlab/data/anthropic_evals.
SHIPPED_AB_SETS: dict[str, str] = {
    "survival-instinct": "survival-instinct.jsonl",
    "corrigible-neutral-HHH": "corrigible-neutral-HHH.jsonl",
}

_OPTION = re.compile(r"(?m)^([ \t]*)\(([A-H])\)([ \t]?)")
_ANSWER = re.compile(r"^\s*\(([A-H])\)\s*$")
_TAIL = re.compile(r"\n[ \t]*\n?[ \t]*Answer:[ \t]*$")


class MalformedQuestion(ValueError):
    """A row that cannot be read as a multiple-choice question."""


@dataclass(frozen=True)
class Option:
    """One option line: ``{lead}({letter}){gap}{text}{trail}``."""

    letter: str
    lead: str
    gap: str
    text: str
    trail: str


@dataclass(frozen=True)
class ABQuestion:
    """A parsed question; ``render()`` rebuilds its text.

    Attributes:
        id: ``"{dataset}-{row}"`` (row = the 0-based index of the row in the source file).
        dataset: the data set's name.
        stem, options, tail: the text before the options, the options, the text after them.
        matching, not_matching: the letters of the behaviour-matching and non-matching answers.
        swapped: whether rebalancing exchanged the two labelled options' texts.
        reduced: whether the ``reduce`` policy dropped options.
    """

    id: str
    dataset: str
    stem: str
    options: tuple[Option, ...]
    tail: str
    matching: str
    not_matching: str
    swapped: bool = False
    reduced: bool = False

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(o.letter for o in self.options)

    def render(self) -> str:
        """The question text (identical to the source for an unchanged question)."""
        return self.stem + "".join(f"{o.lead}({o.letter}){o.gap}{o.text}{o.trail}" for o in self.options) + self.tail

    def swap(self) -> ABQuestion:
        """The same question with the texts of the two labelled options exchanged (labels follow their text)."""
        i, j = self.letters.index(self.matching), self.letters.index(self.not_matching)
        opts = list(self.options)
        opts[i], opts[j] = replace(opts[i], text=self.options[j].text), replace(opts[j], text=self.options[i].text)
        return replace(
            self, options=tuple(opts), matching=self.not_matching, not_matching=self.matching, swapped=not self.swapped
        )

    def reduce(self) -> ABQuestion:
        """Only the two labelled options, relabelled (A)/(B) in their original order."""
        keep = sorted((self.letters.index(self.matching), self.letters.index(self.not_matching)))
        first, second = (self.options[k] for k in keep)
        slot_a, slot_b, last = self.options[0], self.options[1], self.options[-1]
        a = replace(slot_a, letter="A", text=first.text)
        b = replace(slot_b, letter="B", text=second.text, trail=last.trail)
        match = "A" if self.letters.index(self.matching) == keep[0] else "B"
        return replace(self, options=(a, b), matching=match, not_matching="B" if match == "A" else "A", reduced=True)


def _letter(answer: object, what: str) -> str:
    if not isinstance(answer, str) or not (m := _ANSWER.match(answer)):
        raise MalformedQuestion(f"{what} must look like ' (A)', got {answer!r}")
    return m.group(1)


def parse_question(text: str, matching: str, not_matching: str, *, id: str = "", dataset: str = "") -> ABQuestion:
    """Split a question into stem, options and tail.

    Args:
        text: the ``question`` field.
        matching, not_matching: the answer fields (``" (A)"``-style).

    Raises:
        MalformedQuestion: no options, options not A, B, C… in order, or a labelled letter that
            is not among the options (or the same letter twice).
    """
    m_letter, n_letter = (
        _letter(matching, "answer_matching_behavior"),
        _letter(not_matching, "answer_not_matching_behavior"),
    )
    marks = list(_OPTION.finditer(text))
    letters = "".join(m.group(2) for m in marks)
    if len(marks) < 2 or letters != LETTERS[: len(marks)]:
        raise MalformedQuestion(f"options are {letters or 'missing'}, not A, B, C... in order")
    if m_letter == n_letter or m_letter not in letters or n_letter not in letters:
        raise MalformedQuestion(f"labelled answers {m_letter}/{n_letter} are not two of the options {letters}")
    options, tail = [], ""
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        body = text[m.end() : end]
        if k + 1 == len(marks) and (t := _TAIL.search(body)):
            body, tail = body[: t.start()], body[t.start() :]
        stripped = body.rstrip()
        options.append(Option(m.group(2), m.group(1), m.group(3), stripped, body[len(stripped) :]))
    return ABQuestion(id, dataset, text[: marks[0].start()], tuple(options), tail, m_letter, n_letter)


def ab_source_path(source: str) -> Path:
    """The file a source names: ``shipped:NAME`` or a path."""
    if source.startswith("shipped:"):
        name = source.split(":", 1)[1]
        if name not in SHIPPED_AB_SETS:
            raise InputError(f"unknown shipped A/B set {name!r} (known: {', '.join(SHIPPED_AB_SETS)})")
        return Path(str(resources.files("steerlab.data").joinpath("anthropic_evals", SHIPPED_AB_SETS[name])))
    path = Path(source)
    if not path.is_file():
        raise InputError(
            f"{source}: no such A/B question file (give a JSONL path or shipped:NAME, NAME one of "
            f"{', '.join(SHIPPED_AB_SETS)})"
        )
    return path


def read_ab_rows(source: str) -> list[dict]:
    """The JSON rows of a source, each checked for the three fields (errors name the line)."""
    from steerlab._io import iter_jsonl

    path = ab_source_path(source)
    rows = []
    for n, row in enumerate(iter_jsonl(path)):  # n: the row's index (= its line in files without blank lines)
        missing = [k for k in ("question", "answer_matching_behavior", "answer_not_matching_behavior") if k not in row]
        if missing:
            raise InputError(
                f"{path}: row {n + 1}: missing field {missing[0]!r} (advanced-ai-risk rows need "
                "question, answer_matching_behavior, answer_not_matching_behavior)"
            )
        rows.append(row | {"_line": n})
    if not rows:
        raise InputError(f"{path}: no questions")
    return rows


@dataclass(frozen=True)
class ABSet:
    """The questions taken from one source, and what was left out.

    Attributes:
        name: the data set's name.
        questions: the questions used (sampled, reduced per policy, rebalanced).
        n_rows: rows in the source.
        n_malformed: rows left out as malformed.
        n_multi: rows with options past B (left out, reduced or paired per ``policy``).
        policy: the multi-choice policy.
    """

    name: str
    questions: list[ABQuestion]
    n_rows: int
    n_malformed: int
    n_multi: int
    policy: str

    @property
    def n_dropped_multi(self) -> int:
        return self.n_multi if self.policy == "drop" else 0


def apply_policy(q: ABQuestion, policy: str) -> ABQuestion | None:
    """``q`` under the multi-choice policy (None = left out)."""
    if policy not in MULTI_CHOICE_POLICIES:
        raise InputError(f"unknown multi-choice policy {policy!r}; choose one of {', '.join(MULTI_CHOICE_POLICIES)}")
    if len(q.options) == 2:
        return q
    return None if policy == "drop" else q.reduce() if policy == "reduce" else q


def rebalance(questions: Sequence[ABQuestion], seed: int) -> list[ABQuestion]:
    """Swap the labelled options of a seeded selection so exactly ⌊n/2⌋ questions have the
    matching answer at the earlier of its two letters (A/B questions: an equal A/B split)."""
    n = len(questions)
    want_first = [True] * (n // 2) + [False] * (n - n // 2)
    random.Random(f"{seed}|rebalance").shuffle(want_first)
    out = []
    for q, first in zip(questions, want_first):
        is_first = q.letters.index(q.matching) < q.letters.index(q.not_matching)
        out.append(q if is_first == first else q.swap())
    return out


def load_ab_questions(
    source: str,
    *,
    name: str | None = None,
    policy: str = "drop",
    n: int | None = None,
    seed: int = 0,
    balance: bool = True,
) -> ABSet:
    """Questions from one source: parsed, policy applied, a seeded sample of ``n``, rebalanced.

    Args:
        source: ``shipped:NAME`` or a JSONL path.
        name: the data set's name (default: the file stem).
        policy: ``drop``, ``reduce`` or ``pair`` (see the module docstring).
        n: how many questions (a seeded sample, kept in file order); None = all usable.
        seed: seeds the sample and the rebalancing.
        balance: rebalance the answer letters.

    Example:
        >>> s = load_ab_questions("shipped:corrigible-neutral-HHH", n=20)
        >>> sum(q.matching == "A" for q in s.questions)
        10
    """
    rows = read_ab_rows(source)
    name = name or ab_source_path(source).stem
    usable, malformed, multi = [], 0, 0
    for row in rows:
        try:
            q = parse_question(
                row["question"],
                row["answer_matching_behavior"],
                row["answer_not_matching_behavior"],
                id=f"{name}-{row['_line']}",
                dataset=name,
            )
        except MalformedQuestion:
            malformed += 1
            continue
        multi += len(q.options) > 2
        kept = apply_policy(q, policy)
        if kept is not None:
            usable.append(kept)
    if n is not None:
        if n < 1:
            raise InputError(f"{name}: the number of questions must be at least 1, got {n}")
        if n > len(usable):
            raise InputError(
                f"{name}: asked for {n} questions but only {len(usable)} are usable "
                f"({len(rows)} rows, {malformed} malformed, {multi} with options past B, policy {policy})"
            )
        keep = sorted(random.Random(f"{seed}|sample|{name}").sample(range(len(usable)), n))
        usable = [usable[i] for i in keep]
    return ABSet(name, rebalance(usable, seed) if balance else usable, len(rows), malformed, multi, policy)


# ---------------------------------------------------------------------------- prompts and letters


def default_answer_prefix(lm: LanguageModel) -> str:
    """What the reply starts with before the letter: ``" ("`` after the plain format's
    ``Assistant:``, ``"("`` after a chat template's assistant header."""
    return "(" if lm.chat.uses_template else " ("


def ab_prompt(lm: LanguageModel, q: ABQuestion, system: str | None, answer_prefix: str | None = None) -> str:
    """The formatted prompt ending right before the answer letter."""
    prefix = default_answer_prefix(lm) if answer_prefix is None else answer_prefix
    return lm.format(q.render(), system) + prefix


def letter_token_ids(lm: LanguageModel, letters: Sequence[str], answer_prefix: str) -> dict[str, int]:
    """The token id of each letter as it follows ``answer_prefix``.

    Raises:
        InputError: the tokenizer merges the prefix and a letter (or splits a letter), so one
            next-token logit cannot score it; choose another ``answer_prefix``.
    """
    tok = lm.tokenizer
    pre = tok(answer_prefix, add_special_tokens=False)["input_ids"]
    out = {}
    for letter in letters:
        ids = tok(answer_prefix + letter, add_special_tokens=False)["input_ids"]
        if len(ids) != len(pre) + 1 or ids[: len(pre)] != pre:
            raise InputError(
                f"answer prefix {answer_prefix!r}: the tokenizer does not read {letter!r} as one token "
                f"after it ({pre} → {ids}); set another answer_prefix"
            )
        out[letter] = ids[-1]
    return out


def check_letter_position(lm: LanguageModel, prompt: str, letter: str, letter_id: int) -> None:
    """Raise InputError unless ``prompt + letter`` tokenizes as ``prompt``'s tokens plus ``letter_id``."""
    base = lm.tokenize([prompt]).input_ids[0].tolist()
    full = lm.tokenize([prompt + letter]).input_ids[0].tolist()
    if full != base + [letter_id]:
        raise InputError(f"the prompt's last tokens merge with the answer letter {letter!r}; set another answer_prefix")
