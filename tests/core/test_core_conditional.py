"""CAST conditional steering: the gate is decided per row on the prompt, and a gated batch equals the
same batch with the gated rows steered and the others not — exactly."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.interventions import Add, Conditional, projected_cosine

PROMPTS = ["hi", "a much longer prompt here", "steer me", "x", "what is this about?", "no"]


def _by_hand_scores(lm, prompts, direction, layer):
    """Each prompt alone (no padding): the cosine between its last-token state after ``layer`` and
    that state's projection on ``direction``, from Hugging Face's own hidden states."""
    c = direction / direction.norm()
    out = []
    for p in prompts:
        ids = lm.tokenizer(lm.format(p), return_tensors="pt")
        with torch.inference_mode():
            hs = lm.model(**ids, output_hidden_states=True).hidden_states[layer + 1][0, -1]
        proj = (hs @ c) * c
        out.append(torch.nn.functional.cosine_similarity(hs, proj, dim=0).item())
    return torch.tensor(out)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    lm = tiny_lm("llama")
    d = lm.hidden_size
    direction = torch.randn(d)
    vector = 4.0 * torch.randn(d)
    scores = _by_hand_scores(lm, PROMPTS, direction, layer=0)
    ordered = scores.sort().values
    gaps = ordered[1:] - ordered[:-1]
    k = int(gaps.argmax())  # the widest gap: rows on both sides, far from any score
    threshold = float((ordered[k] + ordered[k + 1]) / 2)
    return lm, direction, vector, scores, threshold


def test_projected_cosine_equals_cosine_with_projection():
    h, c = torch.randn(5, 7), torch.randn(7)
    proj = (h @ (c / c.norm()))[:, None] * (c / c.norm())
    ref = torch.nn.functional.cosine_similarity(h, proj, dim=-1)
    assert torch.allclose(projected_cosine(h, c), ref, atol=1e-6)


def test_gate_follows_the_prompt_scores(setup):
    lm, direction, vector, scores, threshold = setup
    cast = Conditional(Add(vector, strength=1.0, layers=2), direction=direction, layer=0, threshold=threshold)
    batch = lm.tokenize([lm.format(p) for p in PROMPTS])
    lm.hidden_states(batch, [cast])
    assert torch.allclose(cast.scores, scores, atol=1e-4)
    assert cast.gate.tolist() == (scores > threshold).tolist()
    assert 0 < int(cast.gate.sum()) < len(PROMPTS)  # both kinds of row in the batch


def test_gated_batch_equals_gated_rows_steered_and_the_others_not(setup):
    lm, direction, vector, scores, threshold = setup
    expected_gate = scores > threshold
    cast = Conditional(Add(vector, strength=1.0, layers=2), direction=direction, layer=0, threshold=threshold)
    reference = Add(vector, strength=expected_gate.float(), layers=2)  # per-row: 1 on gated rows, 0 elsewhere
    batch = lm.tokenize([lm.format(p) for p in PROMPTS])
    h_cast = lm.hidden_states(batch, [cast])
    h_ref = lm.hidden_states(batch, [reference])
    h_none = lm.hidden_states(batch)
    assert torch.equal(h_cast, h_ref)  # exact
    assert torch.equal(h_cast[~expected_gate], h_none[~expected_gate])  # ungated rows: unsteered, bit for bit
    assert not torch.allclose(h_cast[expected_gate], h_none[expected_gate])  # the steering does something

    # generation: the decision made on the prompt holds for every generated token
    kw = dict(max_new_tokens=8, batch_size=len(PROMPTS))
    cast2 = Conditional(Add(vector, strength=1.0, layers=2), direction=direction, layer=0, threshold=threshold)
    got = [c.text for c in lm.complete(PROMPTS, interventions=[cast2], **kw)]
    want = [c.text for c in lm.complete(PROMPTS, interventions=[reference], **kw)]
    assert got == want
    assert cast2.gate.tolist() == expected_gate.tolist()


def test_rows_outside_the_condition_are_always_steered_and_smaller_inverts(setup):
    lm, direction, vector, scores, threshold = setup
    subject = [True, True, True, False, False, False]
    cast = Conditional(
        Add(vector, strength=1.0, layers=2),
        direction=direction,
        layer=0,
        threshold=threshold,
        comparator="smaller",
        rows=subject,
    )
    batch = lm.tokenize([lm.format(p) for p in PROMPTS])
    lm.hidden_states(batch, [cast])
    want = [(s < threshold) if sub else True for s, sub in zip(scores.tolist(), subject)]
    assert cast.gate.tolist() == want


def test_condition_must_be_read_before_the_steered_layers(setup):
    lm, direction, vector, _, threshold = setup
    cast = Conditional(Add(vector, strength=1.0, layers=1), direction=direction, layer=1, threshold=threshold)
    batch = lm.tokenize([lm.format(p) for p in PROMPTS])
    with pytest.raises(InputError, match="below every steered layer"):
        lm.hidden_states(batch, [cast])
