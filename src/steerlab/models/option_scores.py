"""Log-probabilities of short answers (rating values, A/B letters) from one forward pass.

:func:`option_logprobs` is what :meth:`LanguageModel.option_logprobs
<steerlab.models.hf.LanguageModel.option_logprobs>` runs: for each conversation and each
option, ``log P(the reply starts with the option)`` under the local model (optionally steered),
without sampling.

How it is computed (and why it is cheap):

1. **Spellings.** A reply "starts with" option ``o`` when, ignoring one leading space, its text
   begins with ``o``. Both spellings, ``" " + o`` and ``o``, are tokenised *in context* (the
   formatted prompt followed by the spelling, keeping the prompt's own tokens), so they are the
   tokens the model would generate after the prompt. In the plain format the reply follows
   ``"Assistant:"`` and normally starts with a space: Gemma 3 writes ``" 3"`` as ``["▁", "3"]``
   and ``" A"`` as ``["▁A"]``, a byte-level BPE ``" 3"`` as ``["Ġ3"]``. ``P(o)`` is the sum over
   its spellings (disjoint events: their token sequences differ; a spelling whose tokens extend
   another spelling of the same option is dropped, as it is already counted).
2. **Chain rule on a trie.** ``log P(t1..tn) = Σ_j [logit(t_j) − logsumexp_vocab]`` at the node
   (token prefix) before ``t_j``. The nodes of all spellings form a trie; its root is the prompt's
   last position. Nodes deeper than the root are read from *paths* (token prefixes that are not
   themselves prefixes of other needed nodes):

   - no path (every option is one token, e.g. ``" A"``/``" B"``): one pass over the prompt;
   - one path (Gemma's digits all follow ``"▁"``): one pass over the prompt plus that path;
   - more paths (multi-token answers such as ``"27"`` or ``"100"``): one pass over the prompt
     that keeps the KV cache, then one short pass of ``len(path)`` tokens per path on that
     cache, cropped back after each; the prompt is never recomputed.
3. **Normaliser.** ``logsumexp`` over the vocabulary is needed only at the trie's nodes (a few
   positions per row, never every position of the sequence); it is computed from the LM head
   for at most ``chunk`` positions at a time (one row of ``vocab`` floats per position), through
   :meth:`LanguageModel.logits_for <steerlab.models.hf.LanguageModel.logits_for>` so soft-capping
   is applied. The option tokens' own logits come from the same rows.
4. **Exact answers** (``exact=True``): every option is scored as "the option, then a token that
   does not continue the word" (:func:`steerlab.prefs.words.continues_word`, the rule the
   sampled-reply parser uses too): ``+ log(1 − P(next token continues the word))``. Rating
   distributions use this so ``"1"`` on −5..+5 counts neither ``"10"``, ``"15"`` nor ``"1st"``,
   whether or not another option spells the longer word; A/B choices do not need it.

Per-row interventions (one strength per row) work as in :meth:`LanguageModel.complete
<steerlab.models.hf.LanguageModel.complete>`: every pass keeps the batch's rows in order, so
pass ``batch_size`` equal to the number of conversations. Positions: the path tokens count as
generated tokens (``positions="prompt"`` leaves them alone, ``"all"`` steers them).

Example:
    >>> lm.option_logprobs([user("Rate 1-5: tea")], ["1", "2", "3", "4", "5"])
    [{'1': -4.1, '2': -3.2, '3': -1.9, '4': -1.4, '5': -2.7}]
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from steerlab.errors import InputError
from steerlab.prefs.words import continues_word

if TYPE_CHECKING:
    from steerlab.interventions.base import Intervention
    from steerlab.models.backend import Conversation

# ``lm`` is a steerlab.models.hf.LanguageModel and ``batch`` its Batch. They are not imported, not
# even for types: LanguageModel.option_logprobs calls into this module, and steerlab has no import
# cycles (tests/core/test_import_cycles.py).
LanguageModel = Any
Batch = Any

Node = tuple[int, ...]  # a token prefix of the reply; () is the prompt's last position


@dataclass(frozen=True)
class OptionPlan:
    """The token spellings of every option and the trie nodes they need.

    Attributes:
        spellings: option → token sequences that spell it (one or two).
        needs_end: spellings (token tuples) scored with the "word ends here" factor (all, when exact).
        nodes: every node at which a next-token distribution is needed, root first.
        paths: the maximal non-root nodes; each is one pass (or one cached round).
    """

    spellings: dict[str, tuple[Node, ...]]
    needs_end: frozenset[Node]
    nodes: tuple[Node, ...]
    paths: tuple[Node, ...]


def _in_context(lm: LanguageModel, prompt: str, prompt_ids: list[int], text: str) -> Node:
    """Token ids of ``text`` as generated after ``prompt`` (the prompt's own tokens kept)."""
    add_special = not lm.chat.uses_template
    full = lm.tokenizer(prompt + text, add_special_tokens=add_special)["input_ids"]
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return tuple(full[len(prompt_ids) :])
    # the text would merge with the prompt's last token: generation cannot do that, so use the
    # text's own tokens (what the model must emit after the prompt's tokens)
    return tuple(lm.tokenizer(text, add_special_tokens=False)["input_ids"])


def plan_options(lm: LanguageModel, prompt: str, options: Sequence[str], *, exact: bool = False) -> OptionPlan:
    """Spellings, trie nodes and passes for scoring ``options`` after ``prompt`` (see the module docstring).

    Args:
        lm: The model (its tokenizer and chat format).
        prompt: A formatted prompt ending where the reply begins.
        options: Non-empty, distinct answer strings.
        exact: Add the "word ends here" factor to every option.
    """
    if not options:
        raise InputError("option_logprobs: no options given")
    if len(set(options)) != len(options):
        raise InputError(f"option_logprobs: options must be distinct, got {list(options)}")
    if any(not o.strip() for o in options):
        raise InputError("option_logprobs: options must be non-empty text")
    add_special = not lm.chat.uses_template
    prompt_ids = lm.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
    spellings: dict[str, tuple[Node, ...]] = {}
    for o in options:
        seqs: list[Node] = []
        for text in dict.fromkeys((" " + o.lstrip(), o.lstrip())):
            ids = _in_context(lm, prompt, prompt_ids, text)
            if ids and not any(ids[: len(s)] == s for s in seqs) and ids not in seqs:
                seqs = [s for s in seqs if s[: len(ids)] != ids] + [ids]
        spellings[o] = tuple(seqs)
    every = [s for seqs in spellings.values() for s in seqs]
    needs_end = frozenset(every) if exact else frozenset()
    nodes: dict[Node, None] = {(): None}
    for s in every:
        for j in range(len(s)):
            nodes[s[:j]] = None
        if s in needs_end:
            nodes[s] = None
    deep = [n for n in nodes if n]
    paths = tuple(n for n in deep if not any(len(m) > len(n) and m[: len(n)] == n for m in deep))
    return OptionPlan(spellings, needs_end, tuple(nodes), paths)


_CONTINUES: weakref.WeakKeyDictionary[Any, torch.Tensor] = weakref.WeakKeyDictionary()


def continuation_mask(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """``[vocab_size]`` bool: tokens whose text starts with a letter or digit (they would extend a word).

    A leading SentencePiece ``"▁"`` or byte-level ``"Ġ"``/``"Ċ"`` is whitespace, so such tokens
    start a new word and do not continue one. Computed once per tokenizer.
    """
    cached = _CONTINUES.get(tokenizer)
    if cached is not None and cached.shape[0] == vocab_size:
        return cached
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    special = set(getattr(tokenizer, "all_special_ids", []))
    flags = [i not in special and bool(p) and p[0] not in "▁ĠĊ" and continues_word(p) for i, p in enumerate(pieces)]
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[: len(flags)] = torch.tensor(flags, dtype=torch.bool)
    _CONTINUES[tokenizer] = mask
    return mask


@dataclass
class _NodeScores:
    lse: torch.Tensor  # [B] logsumexp over the vocabulary
    child: dict[int, torch.Tensor]  # token id -> [B] logit
    continues: torch.Tensor | None  # [B] logsumexp over word-continuing tokens (exact mode)


def _score_node(lm: LanguageModel, h: torch.Tensor, children: Sequence[int], end: bool, chunk: int) -> _NodeScores:
    """Normaliser, chosen logits and (optionally) the continuation mass at one node for every row.

    ``h`` is ``[B, d]``; full-vocabulary logits exist for at most ``chunk`` rows at a time.
    """
    lse, picked, cont = [], [], []
    ids = torch.tensor(list(children), dtype=torch.long)
    mask = continuation_mask(lm.tokenizer, lm.model.get_output_embeddings().weight.shape[0]) if end else None
    for i in range(0, h.shape[0], chunk):
        logits = lm.logits_for(h[i : i + chunk]).float()  # [n, vocab]
        lse.append(torch.logsumexp(logits, dim=-1).cpu())
        picked.append(logits[:, ids.to(logits.device)].cpu())
        if mask is not None:
            cont.append(torch.logsumexp(logits[:, mask.to(logits.device)], dim=-1).cpu())
    sel = torch.cat(picked)  # [B, K]
    return _NodeScores(
        torch.cat(lse), {int(t): sel[:, k] for k, t in enumerate(ids.tolist())}, torch.cat(cont) if cont else None
    )


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: the index among each row's real tokens (pads: 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _forward(
    lm: LanguageModel, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any = None
) -> tuple[torch.Tensor, Any]:
    from steerlab.models.layers import base_model

    model = base_model(lm.model)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=pos,
        use_cache=cache is not None,
        **{_cache_kwarg(type(model)): cache},
    )
    return out.last_hidden_state, cache


@functools.cache
def _cache_kwarg(model_class: type) -> str:
    """``cache`` where the model's forward takes it (transformers ≥ 5.2x, which deprecates the old name
    and drops it in 5.40), else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _node_states(lm: LanguageModel, batch: Batch, plan: OptionPlan) -> dict[Node, torch.Tensor]:
    """Final hidden states ``[B, d]`` at every node of the plan (inside an intervention session)."""
    ids, mask = batch.input_ids, batch.attention_mask
    b = ids.shape[0]
    states: dict[Node, torch.Tensor] = {}
    if len(plan.paths) <= 1:  # one pass over prompt (+ the path)
        path = plan.paths[0] if plan.paths else ()
        extra = torch.tensor([path] * b, dtype=ids.dtype, device=ids.device).reshape(b, len(path))
        full_mask = torch.cat([mask, torch.ones_like(extra)], dim=1)
        h, _ = _forward(lm, torch.cat([ids, extra], dim=1), full_mask, _positions(full_mask))
        tail = h[:, h.shape[1] - len(path) - 1 :]  # [B, 1 + L]: the prompt's last token, then the path
        for j in range(len(path) + 1):
            states[path[:j]] = tail[:, j]
        return states
    from transformers import DynamicCache

    cache = DynamicCache()  # plain full-length layers: cropping back to the prompt is exact
    h, cache = _forward(lm, ids, mask, _positions(mask), cache)
    states[()] = h[:, -1]
    start = batch.prompt_len.to(ids.device)[:, None]  # next real-token index of every row
    for path in plan.paths:
        n = len(path)
        extra = torch.tensor([path] * b, dtype=ids.dtype, device=ids.device)
        hp, cache = _forward(
            lm,
            extra,
            torch.cat([mask, torch.ones_like(extra)], dim=1),
            start + torch.arange(n, device=ids.device),
            cache,
        )
        cache.crop(-n)
        for j in range(1, n + 1):
            states.setdefault(path[:j], hp[:, j - 1])
    return states


def _batch_logprobs(
    lm: LanguageModel, prompts: list[str], plan: OptionPlan, interventions: Sequence[Intervention], chunk: int
) -> list[dict[str, float]]:
    batch = lm.tokenize(prompts)
    children: dict[Node, set[int]] = {n: set() for n in plan.nodes}
    for seqs in plan.spellings.values():
        for s in seqs:
            for j, t in enumerate(s):
                children[s[:j]].add(t)
    with lm.session(interventions, batch.prompt_len):
        states = _node_states(lm, batch, plan)
        scores = {n: _score_node(lm, states[n], sorted(children[n]), n in plan.needs_end, chunk) for n in plan.nodes}
    out: list[torch.Tensor] = []
    for seqs in plan.spellings.values():
        per_spelling = []
        for s in seqs:
            lp = sum((scores[s[:j]].child[t] - scores[s[:j]].lse for j, t in enumerate(s)), torch.zeros(len(prompts)))
            if s in plan.needs_end:
                end = scores[s]
                lp = lp + torch.log1p(-torch.exp(end.continues - end.lse).clamp(max=1 - 1e-12))  # type: ignore[operator]
            per_spelling.append(lp)
        out.append(torch.logsumexp(torch.stack(per_spelling), dim=0))  # [B]
    table = torch.stack(out, dim=1)  # [B, n_options]
    names = list(plan.spellings)
    return [{o: float(v) for o, v in zip(names, row)} for row in table.tolist()]


def option_logprobs(
    lm: LanguageModel,
    conversations: Sequence[str | Conversation],
    options: Sequence[str],
    *,
    exact: bool = False,
    system: str | None = None,
    interventions: Sequence[Intervention] = (),
    batch_size: int | None = None,
    chunk: int = 8,
) -> list[dict[str, float]]:
    """Per conversation, ``{option: log P(reply starts with option)}`` (see the module docstring).

    Args:
        lm: The local model.
        conversations: User messages (str) or conversations.
        options: Distinct answer strings (``"1"``..``"5"``, ``"A"``/``"B"``, ``"apple"``).
        exact: Score every option as a complete word (the next token does not continue it).
        system: A system prompt for every conversation.
        interventions: Applied to every pass; per-row values need ``batch_size`` equal to the
            number of conversations.
        batch_size: Rows per pass (default: the model's).
        chunk: Positions whose full-vocabulary logits are held at once.

    Example:
        >>> option_logprobs(lm, [user("A or B?")], ["A", "B"])
        [{'A': -1.2, 'B': -0.9}]
    """
    prompts = [lm.format(c, system) for c in conversations]
    if not prompts:
        return []
    plan = plan_options(lm, prompts[0], options, exact=exact)
    tail = prompts[0][-32:]
    for p in prompts[1:]:
        if not p.endswith(tail) and plan_options(lm, p, options, exact=exact).spellings != plan.spellings:
            raise InputError(
                "option_logprobs: the conversations end differently, so their options tokenise "
                "differently; score them in separate calls"
            )
    bs = batch_size or lm.batch_size
    out: list[dict[str, float]] = []
    for i in range(0, len(prompts), bs):
        out += _batch_logprobs(lm, prompts[i : i + bs], plan, interventions, chunk)
    return out
