"""Loading models, chat formatting, layer/site lookup, and the backend contracts."""

from __future__ import annotations

from steerlab.models.backend import (
    ChatBackend,
    Completion,
    Conversation,
    LogprobScorer,
    OptionLogprobs,
    OptionScorer,
    TextGenerator,
    user,
)
from steerlab.models.chat import ChatFormatter, plain_format
from steerlab.models.hf import LanguageModel, config_hash
from steerlab.models.layers import SITES, register_architecture
from steerlab.models.load import load_model

__all__ = [
    "SITES",
    "ChatBackend",
    "ChatFormatter",
    "Completion",
    "Conversation",
    "OptionLogprobs",
    "OptionScorer",
    "LanguageModel",
    "LogprobScorer",
    "TextGenerator",
    "config_hash",
    "load_model",
    "plain_format",
    "register_architecture",
    "user",
]
