"""Steering vectors from contrast data: mean difference (CAA) and PCA of differences.

All requested layers are read in ONE forward pass that stops right after the deepest requested
layer (the LM head is never computed). Token selectors pick which tokens of each example are
averaged into its activation:

    last             the last token of the example (the completion's last token if it has one)
    first            the first token of the completion (the first prompt token if there is none)
    mean             mean over the completion tokens (over the prompt tokens if there is none)
    post_instruction mean over the chat template's tokens after the user's text (Arditi et al.)
    <int>            that token index of the whole sequence (negative counts from the end)

Normalisation:
    none             raw difference of means
    unit             ||v|| = 1
    activation_norm  ||v|| = the mean activation norm at that layer on the extraction data, so
                     strength 0.1 adds 10% of a typical activation (seed 004's fix)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from steerlab.errors import InputError
from steerlab.interventions.hooks import StopForward, hook_manager
from steerlab.models.backend import Conversation
from steerlab.models.hf import Batch, LanguageModel
from steerlab.models.layers import Site, base_model, check_layer, check_site
from steerlab.names import METHODS, NORMALIZATIONS, SELECTORS, Method, Normalization, SelectorName
from steerlab.vectors.vector import SteeringVector, VectorMeta, VectorSet, data_hash

Selector = SelectorName | int


@dataclass(frozen=True)
class Example:
    """One side of a contrast: a prompt (text or conversation) and an optional completion."""

    prompt: str | Conversation
    completion: str = ""
    system: str | None = None


def _selector_weights(sel: Selector, prompt_len: torch.Tensor, attn: torch.Tensor, n_post: int) -> torch.Tensor:
    """``[B, T]`` weights (rows sum to 1) for one selector on a left-padded batch."""
    b, t = attn.shape
    total = attn.sum(-1)  # [B] real tokens
    idx = attn.long().cumsum(-1) - 1  # [B, T] index among real tokens
    idx = torch.where(attn.bool(), idx, torch.full_like(idx, -(10**9)))
    has_completion = total > prompt_len
    start = torch.where(has_completion, prompt_len, torch.zeros_like(prompt_len))[:, None]
    end = total[:, None]
    if sel == "last":
        m = idx == end - 1
    elif sel == "first":
        m = idx == start
    elif sel == "mean":
        m = (idx >= start) & (idx < end)
    elif sel == "post_instruction":
        m = (idx >= prompt_len[:, None] - n_post) & (idx < prompt_len[:, None])
    elif isinstance(sel, int):
        target = end + sel if sel < 0 else torch.full_like(end, sel)
        m = idx == target
    else:
        raise InputError(f"unknown token selector {sel!r}; use {', '.join(SELECTORS)} or an int")
    w = m.float()
    count = w.sum(-1, keepdim=True)
    if (count == 0).any():
        raise InputError(f"token selector {sel!r} selects no token in some example (too short?)")
    return w / count


def _encode(lm: LanguageModel, examples: Sequence[Example]) -> Batch:
    prompts = [lm.format(e.prompt, e.system) for e in examples]
    return lm.tokenize_with_completions(prompts, [e.completion for e in examples])[0]


def read_activations(
    lm: LanguageModel,
    examples: Sequence[Example],
    layers: Sequence[int],
    *,
    site: Site = "resid_post",
    selector: Selector = "last",
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Selected-token activations per layer, from one truncated forward pass per batch.

    ``progress``, if given, is called as ``progress(done, total)`` (examples) after each batch.

    Returns ``(acts, norms)``: ``acts[layer]`` is ``[N, d]`` (selector-weighted mean over the
    selected tokens), ``norms[layer]`` is ``[N]`` (the weighted mean of per-token norms).
    """
    site = check_site(site)
    layers = sorted({check_layer(lm.model, layer) for layer in layers})
    if not examples:
        raise InputError("no examples to read activations from")
    deepest = layers[-1]
    n_post = lm.chat.post_instruction_tokens() if selector == "post_instruction" else 0
    mgr = hook_manager(lm.model)
    acts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    norms: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    bs = batch_size or lm.batch_size
    for i in range(0, len(examples), bs):
        batch = _encode(lm, examples[i : i + bs])
        w = _selector_weights(selector, batch.prompt_len, batch.attention_mask, n_post)  # [B, T]
        entries = []

        def make(layer: int, w: torch.Tensor = w):  # this batch's weights, bound now
            def fn(h: torch.Tensor, info: object) -> None:
                hf = h.float()
                acts[layer].append(torch.einsum("bt,btd->bd", w, hf).cpu())
                norms[layer].append((w * hf.norm(dim=-1)).sum(-1).cpu())
                if layer == deepest:
                    raise StopForward

            return fn

        try:
            for layer in layers:
                entries.append(mgr.add(layer, site, make(layer), capture=True))
            with mgr.prompt_lengths(batch.prompt_len), torch.inference_mode():
                base_model(lm.model)(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    use_cache=False,
                )
        except StopForward:
            pass
        finally:
            for e in entries:
                mgr.remove(e)
        if progress is not None:
            progress(min(i + bs, len(examples)), len(examples))
    return ({k: torch.cat(v) for k, v in acts.items()}, {k: torch.cat(v) for k, v in norms.items()})


def _direction(pos: torch.Tensor, neg: torch.Tensor, method: Method) -> torch.Tensor:
    if method == "mean_diff":
        return pos.mean(0) - neg.mean(0)
    if method == "pca":
        if pos.shape != neg.shape:
            raise InputError("pca needs paired examples: as many positive as negative examples")
        diffs = (pos - neg).double()
        centred = diffs - diffs.mean(0)
        if pos.shape[0] < 2 or centred.abs().max() == 0:
            return diffs.mean(0).float()
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        pc = vh[0]
        proj = diffs @ pc  # sign and length: the mean projection of the differences on the PC
        return (pc * proj.mean()).float()
    raise InputError(f"unknown method {method!r}; use {' or '.join(METHODS)}")


def extract(
    lm: LanguageModel,
    positive: Sequence[Example],
    negative: Sequence[Example],
    layers: Sequence[int] | int | str,
    *,
    method: Method = "mean_diff",
    site: Site = "resid_post",
    selector: Selector = "last",
    normalization: Normalization = "none",
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VectorSet:
    """Contrast vectors (positive minus negative) at every requested layer, one per layer.

    Returns a :class:`~steerlab.vectors.VectorSet`; ``vecs[6]`` is the vector at layer 6.

    ``progress``, if given, is called as ``progress(done, total)`` (examples, both sides) per batch.

    Example:
        >>> pos = [Example(p.prompt, p.refusal) for p in pairs]
        >>> neg = [Example(p.prompt, p.compliance) for p in pairs]
        >>> vecs = extract(lm, pos, neg, layers=[4, 6, 8], normalization="activation_norm")
    """
    from steerlab import __version__

    if isinstance(layers, str):
        if layers != "all":
            raise InputError(f"layers must be a list of ints or 'all', got {layers!r}")
        layers = list(range(lm.n_layers))
    layers = [layers] if isinstance(layers, int) else list(layers)
    if normalization not in NORMALIZATIONS:
        raise InputError(f"unknown normalization {normalization!r}; use {', '.join(NORMALIZATIONS)}")
    if not positive or not negative:
        raise InputError("extract needs at least one positive and one negative example")
    both = list(positive) + list(negative)
    acts, norms = read_activations(
        lm, both, layers, site=site, selector=selector, batch_size=batch_size, progress=progress
    )
    n_pos = len(positive)
    dh = data_hash([[str(e.prompt), e.completion, e.system] for e in both])
    out: list[SteeringVector] = []
    for layer in acts:
        v = _direction(acts[layer][:n_pos], acts[layer][n_pos:], method)
        raw = float(v.norm())
        act_norm = float(norms[layer].mean())
        if normalization != "none" and raw > 0:
            v = v / raw * (1.0 if normalization == "unit" else act_norm)
        meta = VectorMeta(
            model_id=lm.model_id,
            config_hash=lm.config_hash,
            hidden_size=lm.hidden_size,
            num_layers=lm.n_layers,
            layer=layer,
            site=site,
            method=method,
            positions=str(selector),
            normalization=normalization,
            activation_norm=act_norm,
            raw_norm=raw,
            n_examples=len(both),
            data_hash=dh,
            steerlab_version=__version__,
        )
        out.append(SteeringVector(v.contiguous(), meta))
    return VectorSet(out)
