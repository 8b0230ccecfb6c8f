"""Option log-probabilities from one pass equal a by-hand full softmax, for every architecture."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import ARCHS, tiny_lm
from steerlab.errors import InputError
from steerlab.interventions import Add, intervene
from steerlab.models.backend import OptionScorer, user
from steerlab.models.option_scores import plan_options

CONVS = [user("Rate tea from 1 to 10."), user("Hi"), user("Which is better, A or B? Answer with one letter.")]


def _by_hand(lm, prompt: str, ids: list[int]) -> tuple[float, torch.Tensor]:
    """log P(ids | prompt) from one unpadded, uncached forward with a full softmax at every
    position, and the log-softmax after the last id."""
    p = lm.tokenizer(prompt, add_special_tokens=not lm.chat.uses_template)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([p + ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    total = sum(float(lp[len(p) - 1 + j, t]) for j, t in enumerate(ids))
    return total, lp[len(p) - 1 + len(ids)]


def _reference(lm, conv, option: str, exact_prefix: bool = False) -> float:
    prompt = lm.format(conv)
    parts = []
    for text in (" " + option, option):
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]  # the char tokenizer never merges
        lp, after = _by_hand(lm, prompt, ids)
        if exact_prefix:  # then a character that is not a letter or digit
            chars = lm.tokenizer.convert_ids_to_tokens(list(range(after.shape[0])))
            cont = [i for i, c in enumerate(chars) if c is not None and len(c) == 1 and c.isalnum()]
            lp += math.log1p(-float(after[cont].exp().sum()))
        parts.append(lp)
    return float(torch.logsumexp(torch.tensor(parts), 0))


@pytest.mark.parametrize("arch", ARCHS)
def test_matches_full_softmax_by_hand(arch):
    lm = tiny_lm(arch)
    assert isinstance(lm, OptionScorer)
    options = ["1", "2", "10", "A"]  # several paths: the prompt is cached and cropped between them
    got = lm.option_logprobs(CONVS, options, batch_size=3)  # left padding: three prompt lengths
    for conv, row in zip(CONVS, got):
        for o in options:
            assert row[o] == pytest.approx(_reference(lm, conv, o), abs=2e-4), (arch, o)


def test_single_path_and_continuation_logprobs_agree():
    lm = tiny_lm("qwen2")
    got = lm.option_logprobs(CONVS, ["3", "4"])  # one path (the space) -> one pass over prompt + " "
    plan = plan_options(lm, lm.format(CONVS[0]), ["3", "4"])
    assert plan.paths == ((lm.tokenizer.convert_tokens_to_ids(" "),),)
    for conv, row in zip(CONVS, got):
        spaced = sum(lm.continuation_logprobs([conv], [" 4"])[0])  # another code path for " 4"
        bare, _ = _by_hand(lm, lm.format(conv), lm.tokenizer("4", add_special_tokens=False)["input_ids"])
        assert row["4"] == pytest.approx(float(torch.logsumexp(torch.tensor([spaced, bare]), 0)), abs=2e-4)


def test_exact_scores_prefixes_as_whole_words():
    lm = tiny_lm("llama")
    got = lm.option_logprobs(CONVS[:2], ["1", "10", "2"], exact=True)
    for conv, row in zip(CONVS, got):
        assert row["1"] == pytest.approx(_reference(lm, conv, "1", exact_prefix=True), abs=2e-4)
        # every option is a whole word (issue 16): "10" is not "100", "2" is not "2nd"
        assert row["10"] == pytest.approx(_reference(lm, conv, "10", exact_prefix=True), abs=2e-4)
        assert row["2"] == pytest.approx(_reference(lm, conv, "2", exact_prefix=True), abs=2e-4)
    loose = lm.option_logprobs(CONVS[:2], ["1", "10", "2"])
    assert all(e["1"] < r["1"] for e, r in zip(got, loose))  # "1" no longer counts "10..."


def test_sliding_window_cache_rounds():
    import transformers as T

    from conftest import tiny_tokenizer
    from steerlab.models.hf import LanguageModel

    torch.manual_seed(0)
    cfg = T.Gemma3TextConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        sliding_window=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = T.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    lm = LanguageModel(model=model, tokenizer=tiny_tokenizer(), model_id="tiny-gemma3-sw4")
    got = lm.option_logprobs(CONVS, ["12", "27", "3"])
    for conv, row in zip(CONVS, got):
        for o in ("12", "27", "3"):
            assert row[o] == pytest.approx(_reference(lm, conv, o), abs=2e-4)


def test_per_row_strengths_equal_one_row_at_a_time():
    lm = tiny_lm("llama")
    v = torch.randn(lm.hidden_size)
    convs = [CONVS[0]] * 3
    got = lm.option_logprobs(
        convs, ["1", "27"], batch_size=3, interventions=[Add(v, strength=torch.tensor([0.0, 2.0, -3.0]), layers=1)]
    )
    plain = lm.option_logprobs(convs[:1], ["1", "27"])[0]
    assert got[0] == pytest.approx(plain, abs=1e-5)  # strength 0 is unsteered
    for row, s in zip(got[1:], (2.0, -3.0)):
        with intervene(lm.model, Add(v, strength=s, layers=1)):
            ref = {o: _reference(lm, convs[0], o) for o in ("1", "27")}
        assert row == pytest.approx(ref, abs=2e-4)
        assert row["1"] != pytest.approx(plain["1"], abs=1e-3)


def test_bad_options_are_input_errors():
    lm = tiny_lm("llama")
    for bad in ([], ["1", "1"], ["1", " "]):
        with pytest.raises(InputError, match="option"):
            lm.option_logprobs(CONVS, bad)


@pytest.mark.slow
def test_default_model_digits_and_letters_by_hand(default_lm):
    """Gemma 3: " 3" is ["▁", "3"] (one path), " A" is one token ["▁A"] (the prompt pass alone)."""
    lm = default_lm
    tok = lm.tokenizer
    conv = user("On a scale of 1 to 5, how much did you enjoy writing a haiku? Answer with a digit.")
    prompt = lm.format(conv)
    plan = plan_options(lm, prompt, ["1", "2", "3", "4", "5"])
    assert plan.paths == ((tok.convert_tokens_to_ids("▁"),),)
    assert plan.spellings["3"] == (
        (tok.convert_tokens_to_ids("▁"), tok.convert_tokens_to_ids("3")),
        (tok.convert_tokens_to_ids("3"),),
    )
    assert plan_options(lm, prompt, ["A", "B"]).paths == ()
    got = lm.option_logprobs([conv], ["1", "2", "3", "4", "5", "A", "B"])[0]
    for o in ("3", "A"):
        parts = [_by_hand(lm, prompt, list(s))[0] for s in plan_options(lm, prompt, [o]).spellings[o]]
        assert got[o] == pytest.approx(float(torch.logsumexp(torch.tensor(parts), 0)), abs=1e-3)
