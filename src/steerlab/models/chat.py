"""Turn conversations into prompt text, for any tokenizer, without ever crashing.

Rules, in order:
1. The tokenizer has a chat template → use it with ``add_generation_prompt=True``. Qwen3-style
   templates get ``enable_thinking=False`` unless ``thinking=True`` is asked for.
2. The template rejects the system role (Gemma 2, some Mistral templates) → the system prompt
   is merged into the first user turn as ``"{system}\\n\\n{user}"`` and the template is retried.
3. No template (base models such as the default Gemma 3 270M) → the plain format below.

Plain format (documented; stable across steerlab versions)::

    {system}\\n\\n            (only when a system prompt is given)
    User: {user turn}\\n
    Assistant: {assistant turn}\\n     (earlier assistant turns, if any)
    Assistant:                       (generation prompt; the reply follows after a space)
"""

from __future__ import annotations

from dataclasses import dataclass

from steerlab.models.backend import Conversation

PLAIN_USER = "User: "
PLAIN_ASSISTANT = "Assistant:"


def merge_system_into_user(conv: Conversation) -> Conversation:
    """Fold a leading system message into the first user message (seed 001, FM-4)."""
    if not conv or conv[0]["role"] != "system":
        return list(conv)
    system, rest = conv[0]["content"], [dict(m) for m in conv[1:]]
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def plain_format(conv: Conversation) -> str:
    """The documented fallback format for tokenizers without a chat template."""
    parts: list[str] = []
    for m in conv:
        if m["role"] == "system":
            parts.append(f"{m['content']}\n\n")
        elif m["role"] == "user":
            parts.append(f"{PLAIN_USER}{m['content']}\n")
        else:
            parts.append(f"{PLAIN_ASSISTANT} {m['content']}\n")
    parts.append(PLAIN_ASSISTANT)
    return "".join(parts)


@dataclass
class ChatFormatter:
    """Formats conversations for one tokenizer. ``mode`` is "auto", "template" or "plain"."""

    tokenizer: object
    mode: str = "auto"
    thinking: bool = False
    system_supported: bool | None = None  # learned on first use

    @property
    def uses_template(self) -> bool:
        return self.mode != "plain" and bool(getattr(self.tokenizer, "chat_template", None))

    def _apply(self, conv: Conversation) -> str:
        kwargs = {"tokenize": False, "add_generation_prompt": True}
        if not self.thinking:
            kwargs["enable_thinking"] = False
        return self.tokenizer.apply_chat_template(conv, **kwargs)  # type: ignore[attr-defined]

    def format(self, conv: Conversation) -> str:
        """Prompt text for ``conv``, ending where the assistant's reply begins."""
        if not self.uses_template:
            return plain_format(conv)
        has_system = any(m["role"] == "system" for m in conv)
        if has_system and self.system_supported is False:
            return self._apply(merge_system_into_user(conv))
        try:
            text = self._apply(conv)
            if has_system:
                self.system_supported = True
            return text
        except Exception as e:  # jinja raises TemplateError; some templates raise ValueError
            if not has_system:
                raise
            self.system_supported = False
            _ = e
            return self._apply(merge_system_into_user(conv))

    def post_instruction_tokens(self) -> int:
        """How many tokens the template puts after the user's text (Arditi et al.'s post-instruction span).

        Measured by formatting a marker message and counting the tokens after it.
        """
        marker = "XQZ steerlab marker"
        text = self.format([{"role": "user", "content": marker}])
        tail = text[text.rindex(marker) + len(marker) :]
        return len(self.tokenizer(tail, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
