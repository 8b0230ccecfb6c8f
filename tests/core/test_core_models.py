"""Chat formatting fallbacks, layer/site lookup, loading from a local directory, clear errors."""

from __future__ import annotations

import pytest
import torch

from conftest import ARCHS, tiny_lm, tiny_model, tiny_tokenizer
from steerlab.errors import ArchitectureError, InputError
from steerlab.models.chat import ChatFormatter, merge_system_into_user, plain_format
from steerlab.models.layers import SITES, decoder_layers, register_architecture, site_module


def test_plain_format_is_documented_shape():
    conv = [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "Hi"}]
    assert plain_format(conv) == "Be safe.\n\nUser: Hi\nAssistant:"


_NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<turn>{{ m['role'] }}: {{ m['content'] }}</turn>{% endfor %}"
    "{% if add_generation_prompt %}<turn>model:{% endif %}"
)
_THINKING_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% if enable_thinking is defined and not enable_thinking %}"
    "<think></think>{% endif %}{% endif %}"
)


def test_template_rejecting_system_role_gets_system_merged_into_user():
    tok = tiny_tokenizer()
    tok.chat_template = _NO_SYSTEM_TEMPLATE
    chat = ChatFormatter(tok)
    out = chat.format([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert out == "<turn>user: S\n\nU</turn><turn>model:"
    assert chat.system_supported is False
    assert merge_system_into_user([{"role": "system", "content": "S"}]) == [{"role": "user", "content": "S"}]


def test_thinking_off_unless_asked():
    tok = tiny_tokenizer()
    tok.chat_template = _THINKING_TEMPLATE
    conv = [{"role": "user", "content": "q"}]
    assert ChatFormatter(tok).format(conv).endswith("<assistant><think></think>")
    assert ChatFormatter(tok, thinking=True).format(conv).endswith("<assistant>")


def test_post_instruction_tokens_counts_template_suffix():
    lm = tiny_lm("llama")  # plain format: "User: X\nAssistant:" → "\nAssistant:" is 11 characters
    assert lm.chat.post_instruction_tokens() == len("\nAssistant:")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_site_resolves(arch):
    m = tiny_model(arch)
    assert len(decoder_layers(m)) == 3
    for site in SITES:
        mod, kind = site_module(m, 1, site)
        assert isinstance(mod, torch.nn.Module) and kind in ("pre", "post")


def test_unknown_architecture_names_what_was_tried():
    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(ArchitectureError, match="register_architecture") as e:
        decoder_layers(Weird())
    assert "model.layers" in str(e.value)
    register_architecture("weird", base="", layers="blocks", attn_out="x", mlp_out="y")


def test_load_model_from_local_directory(tmp_path):
    import steerlab as sl

    lm = tiny_lm("qwen3")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    loaded = sl.load_model(str(tmp_path / "m"), device="cpu", dtype="float32")
    assert loaded.n_layers == 3 and loaded.hidden_size == 32
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(loaded.model(input_ids=ids).logits, lm.model(input_ids=ids).logits, atol=1e-6)
    with pytest.raises(InputError, match="no such file"):
        sl.load_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        sl.load_model(str(tmp_path / "empty"))


def test_next_token_logits_of_selected_tokens_equal_full_logits():
    lm = tiny_lm("gemma2")  # has final logit soft-capping
    prompts = ["abc", "a much longer prompt"]
    ids = [10, 20, 30]
    got = lm.next_token_logits(prompts, ids)
    batch = lm.tokenize([lm.format(p) for p in prompts])
    with torch.no_grad():
        full = lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=(batch.attention_mask.cumsum(-1) - 1).clamp(min=0),
        ).logits[:, -1]
    assert torch.allclose(got, full[:, ids], atol=1e-5)


@pytest.mark.parametrize("arch", ["gemma2", "gpt2"])  # soft-capped logits; a tied GPT-2 head
def test_vocab_logsumexp_streams_the_head_and_equals_the_full_normaliser(arch):
    lm = tiny_lm(arch)
    batch = lm.tokenize([lm.format(p) for p in ["abc", "a much longer prompt"]])
    h = lm.hidden_states(batch)[:, -1]  # final-norm states, what the head reads
    with torch.no_grad():
        logits = lm.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        )
    expect = torch.logsumexp(logits.logits[:, -1].float(), -1)
    # a chunk that does not divide the 128-token vocabulary: the last chunk is short
    got = lm.vocab_logsumexp(h, chunk=50)
    assert got.shape == (2,) and torch.allclose(got, expect, atol=1e-5)
    assert torch.allclose(lm.vocab_logsumexp(h.unsqueeze(0)), expect.unsqueeze(0), atol=1e-5)


def test_continuation_logprobs_match_full_softmax():
    lm = tiny_lm("llama")
    lps = lm.continuation_logprobs(["hi"], ["ok"])
    p_ids = lm.tokenizer(lm.format("hi"))["input_ids"]
    c_ids = lm.tokenizer(" ok", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([p_ids + c_ids])).logits[0]
    lp = torch.log_softmax(logits, -1)
    expect = [float(lp[len(p_ids) - 1 + i, c]) for i, c in enumerate(c_ids)]
    assert lps[0] == pytest.approx(expect, abs=1e-5)
    assert lm.continuation_logprobs(["hi"], [""]) == [[]]


@pytest.mark.parametrize("arch", ARCHS)
def test_left_padding_does_not_change_a_row(arch):
    """A prompt's hidden states (and activations read at a layer) are the same alone and in a left-padded
    batch; GPT-2's learned absolute positions need position ids counted from the first real token."""
    lm = tiny_lm(arch)
    alone, padded = lm.tokenize(["Hi"]), lm.tokenize(["Hi", "A much longer prompt"])
    n = alone.input_ids.shape[1]
    with torch.inference_mode():
        torch.testing.assert_close(lm.hidden_states(padded)[0, -n:], lm.hidden_states(alone)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            lm.forward_to_layer(padded, 1)[0, -n:], lm.forward_to_layer(alone, 1)[0], atol=1e-5, rtol=1e-5
        )
