"""Shared fixtures: tiny random-initialised models of every supported architecture family."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)

_COMMON = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def tiny_config(arch: str):
    import transformers as T

    c = dict(_COMMON)
    if arch == "llama":
        return T.LlamaConfig(**c)
    if arch == "mistral":
        return T.MistralConfig(**c)
    if arch == "qwen2":
        return T.Qwen2Config(**c)
    if arch == "qwen3":
        return T.Qwen3Config(**c, head_dim=8)
    if arch == "gemma2":
        return T.Gemma2Config(**c, head_dim=8)
    if arch == "gemma3":
        return T.Gemma3TextConfig(**c, head_dim=8)
    if arch == "phi3":
        return T.Phi3Config(**c)
    if arch == "mixtral":
        return T.MixtralConfig(**c, num_local_experts=4, num_experts_per_tok=2)
    if arch == "gpt2":
        return T.GPT2Config(
            vocab_size=128,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_positions=128,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    if arch == "gpt_neox":
        return T.GPTNeoXConfig(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=128,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    raise KeyError(arch)


ARCHS = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "mixtral", "gpt2", "gpt_neox"]


def tiny_model(arch: str, seed: int = 0):
    import transformers as T

    torch.manual_seed(seed)
    m = T.AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation="eager")
    m.eval()
    return m


@pytest.fixture(params=ARCHS)
def arch_model(request):
    return request.param, tiny_model(request.param)


@pytest.fixture
def llama():
    return tiny_model("llama")


def tiny_tokenizer():
    """A character-level tokenizer (ids 0-3 special, then printable ASCII and newline)."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_lm(arch: str = "llama", seed: int = 0):
    """A steerlab LanguageModel around a tiny random model and the character tokenizer."""
    from steerlab.models.hf import LanguageModel

    return LanguageModel(model=tiny_model(arch, seed), tokenizer=tiny_tokenizer(), model_id=f"tiny-{arch}")


@pytest.fixture(scope="session")
def default_lm():
    """The default model (Gemma 3 270M, real weights), loaded once per test run for every slow test.

    The first load on a machine builds the float cache (about a minute). Tests that use it are
    marked ``slow``; they must not attach interventions that outlive the test.
    """
    import steerlab as sl

    # float32: these tests compare with by-hand fp32 references; what bf16 changes is measured in
    # bench/ (parity), and auto-dtype resolution is tested in tests/models/test_models_dtype.py.
    return sl.load_model("default", device="cpu", dtype="float32")


def save_tiny(path, arch: str = "llama", seed: int = 0):
    """A tiny random model of ``arch`` with the character tokenizer, saved as a Hugging Face folder."""
    lm = tiny_lm(arch, seed)
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny-tensor tests (OpenMP spin-waits cost more than the
    work on a shared machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
