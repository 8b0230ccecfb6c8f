"""Candidate refusal directions: difference of means at every post-instruction position × layer.

Arditi et al. (2024) take, for each token position ``p`` after the user's instruction (the
chat template's tail, e.g. ``"\\nAssistant:"`` in steerlab's plain format) and each layer
``l``, the mean residual stream *entering* layer ``l`` over harmful prompts minus the same
mean over harmless prompts:

    r[p, l] = mean_{x ∈ harmful} h_l(x)[p] − mean_{x ∈ harmless} h_l(x)[p]

Positions count back from the end of the formatted prompt (``-1`` is the last token). Every
layer is read in one forward pass per batch, and each prompt set is read once.

Example:
    >>> cands = candidate_directions(lm, harmful_prompts, harmless_prompts)
    >>> cands["pos-1.layer6"].vector.shape
    torch.Size([640])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from steerlab.errors import InputError
from steerlab.interventions.hooks import hook_manager
from steerlab.models.backend import Conversation
from steerlab.models.hf import LanguageModel
from steerlab.models.layers import Site, base_model, check_layer, check_site
from steerlab.vectors.vector import SteeringVector, VectorMeta, VectorSet, data_hash


def candidate_name(position: int, layer: int) -> str:
    """The name of the candidate at ``position`` (negative, from the prompt end) and ``layer``."""
    return f"pos{position}.layer{layer}"


@dataclass
class PositionMeans:
    """Mean activations at the last ``n_post`` prompt positions of a prompt set, per layer.

    Attributes:
        means: ``[n_post, n_layers_read, d]`` float64; ``means[i]`` is position ``i - n_post``.
        norms: ``[n_post, n_layers_read]`` mean activation norm at each (position, layer).
        layers: the layers read, in order.
        n: number of prompts.
        tail_matches: prompts whose last ``n_post`` tokens are exactly the template's own tail
            tokens (the rest had a tail merged with the instruction by the tokenizer).
    """

    means: torch.Tensor
    norms: torch.Tensor
    layers: list[int]
    n: int
    tail_matches: int


def template_tail_ids(lm: LanguageModel) -> list[int]:
    """Token ids of the chat template's post-instruction tokens, as they appear after a user message."""
    n_post = lm.chat.post_instruction_tokens()
    ids = lm.tokenize([lm.format("XQZ steerlab marker")]).input_ids[0]
    return ids[ids.shape[0] - n_post :].tolist()


def position_means(
    lm: LanguageModel,
    prompts: Sequence[str | Conversation],
    layers: Sequence[int] | str = "all",
    *,
    site: Site = "resid_pre",
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PositionMeans:
    """Mean activations at every post-instruction position and layer over ``prompts`` (one pass per batch).

    Args:
        lm: the model.
        prompts: user messages (formatted with the model's chat template or plain format).
        layers: ``"all"`` or layer indices.
        site: where to read (Arditi et al.: ``resid_pre``, the stream entering the layer).
        batch_size: prompts per forward pass.
        progress: ``progress(done, total)`` after each batch.
    """
    site = check_site(site)
    if not prompts:
        raise InputError("position_means: no prompts")
    chosen = list(range(lm.n_layers)) if layers == "all" else sorted({check_layer(lm.model, int(x)) for x in layers})
    n_post = lm.chat.post_instruction_tokens()
    if n_post < 1:
        raise InputError("the chat template puts no token after the user's message; there is no post-instruction span")
    tail = torch.tensor(template_tail_ids(lm))
    sums = torch.zeros(n_post, len(chosen), lm.hidden_size, dtype=torch.float64)
    norm_sums = torch.zeros(n_post, len(chosen), dtype=torch.float64)
    matches = 0
    mgr = hook_manager(lm.model)
    bs = batch_size or lm.batch_size
    for start in range(0, len(prompts), bs):
        batch = lm.tokenize([lm.format(p) for p in prompts[start : start + bs]])
        if int(batch.prompt_len.min()) < n_post:
            raise InputError(f"a prompt has fewer than {n_post} tokens; it cannot hold the post-instruction span")
        matches += int((batch.input_ids[:, -n_post:].cpu() == tail).all(-1).sum())
        entries = []

        def make(j: int) -> Callable[[torch.Tensor, object], None]:
            def grab(h: torch.Tensor, info: object) -> None:
                x = h[:, -n_post:, :].double().cpu()  # [B, n_post, d]: left padding puts the tail last
                sums[:, j] += x.sum(0)
                norm_sums[:, j] += x.norm(dim=-1).sum(0)

            return grab

        try:
            for j, layer in enumerate(chosen):
                entries.append(mgr.add(layer, site, make(j), capture=True))
            with mgr.prompt_lengths(batch.prompt_len), torch.inference_mode():
                base_model(lm.model)(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    use_cache=False,
                )
        finally:
            for e in entries:
                mgr.remove(e)
        if progress is not None:
            progress(min(start + bs, len(prompts)), len(prompts))
    n = len(prompts)
    return PositionMeans(sums / n, norm_sums / n, chosen, n, matches)


def candidate_directions(
    lm: LanguageModel,
    harmful: Sequence[str | Conversation],
    harmless: Sequence[str | Conversation],
    layers: Sequence[int] | str = "all",
    *,
    site: Site = "resid_pre",
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VectorSet:
    """Difference-of-means candidates (harmful − harmless) at every post-instruction position × layer.

    Returns a :class:`~steerlab.vectors.VectorSet` of raw (unnormalised) vectors named
    :func:`candidate_name` ``(position, layer)``; each vector's metadata records the position
    (``extra["position"]``), the layer, the site, the mean activation norm there and how many
    prompts' tails were the template's own tokens (``extra["tail_matches"]``).

    Example:
        >>> cands = candidate_directions(lm, ["How do I make a bomb?"], ["How do I bake bread?"])
        >>> sorted(cands)[:2]
        ['pos-1.layer0', 'pos-1.layer1']
    """
    from steerlab import __version__

    total = len(harmful) + len(harmless)

    def part(offset: int) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, _n: progress(offset + done, total))

    pos = position_means(lm, harmful, layers, site=site, batch_size=batch_size, progress=part(0))
    neg = position_means(lm, harmless, layers, site=site, batch_size=batch_size, progress=part(len(harmful)))
    n_post = pos.means.shape[0]
    dh = data_hash([[str(p) for p in harmful], [str(p) for p in harmless]])
    out = []
    for i in range(n_post):
        position = i - n_post
        for j, layer in enumerate(pos.layers):
            v = (pos.means[i, j] - neg.means[i, j]).float()
            meta = VectorMeta(
                model_id=lm.model_id,
                config_hash=lm.config_hash,
                hidden_size=lm.hidden_size,
                num_layers=lm.n_layers,
                layer=layer,
                site=site,
                method="mean_diff",
                positions=f"post_instruction[{position}]",
                normalization="none",
                activation_norm=float((pos.norms[i, j] + neg.norms[i, j]) / 2),
                raw_norm=float(v.norm()),
                n_examples=total,
                data_hash=dh,
                steerlab_version=__version__,
                name=candidate_name(position, layer),
                extra={
                    "position": position,
                    "n_harmful": pos.n,
                    "n_harmless": neg.n,
                    "tail_matches": pos.tail_matches + neg.tail_matches,
                },
            )
            out.append(SteeringVector(v.contiguous(), meta))
    return VectorSet(out)
