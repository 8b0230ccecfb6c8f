"""An OpenAI-compatible chat API as a :class:`~steerlab.models.backend.TextGenerator`.

Works with any server that speaks ``POST {base_url}/chat/completions`` (OpenAI, vLLM,
llama.cpp's server, OpenRouter, and steerlab's own ``steerlab.models.serve``). Standard
library only: one request per conversation, retried on connection errors and 429/5xx.

Example:
    >>> judge_backend = OpenAICompatible("https://api.openai.com/v1", "gpt-4o-mini")  # key from OPENAI_API_KEY
    >>> judge_backend.generate([[{"role": "user", "content": "Say hi"}]], max_new_tokens=8)
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from steerlab.errors import BackendError
from steerlab.models.backend import Conversation


@dataclass
class OpenAICompatible:
    """A chat-completions endpoint. The API key is read from ``api_key_env`` (may be unset for local servers)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    retries: int = 3

    @property
    def name(self) -> str:
        return f"api:{self.model}@{self.base_url}"

    def _post(self, payload: dict) -> dict:
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(payload).encode()
        last = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read().decode(errors='replace')[:200]}"
                if e.code not in (429, 500, 502, 503, 504):
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = str(getattr(e, "reason", e))
            except json.JSONDecodeError:
                raise BackendError(f"{url}: the reply is not JSON") from None
            if attempt < self.retries:
                time.sleep(min(2**attempt, 8) * 0.5)
        raise BackendError(f"{url}: request failed ({last})")

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """One reply per conversation."""
        out = []
        for conv in conversations:
            payload: dict = {"model": self.model, "messages": list(conv), "max_tokens": max_new_tokens,
                             "temperature": temperature}
            if seed is not None:
                payload["seed"] = seed
            reply = self._post(payload)
            try:
                out.append(reply["choices"][0]["message"]["content"] or "")
            except (KeyError, IndexError, TypeError):
                raise BackendError(f"{self.base_url}: unexpected reply shape {str(reply)[:200]}") from None
        return out


def parse_api_spec(spec: str) -> OpenAICompatible | None:
    """``openai:MODEL@BASE_URL`` (or ``openai:MODEL`` for api.openai.com) → a backend; else None."""
    if not spec.startswith("openai:"):
        return None
    rest = spec[len("openai:") :]
    model, _, base = rest.partition("@")
    return OpenAICompatible(base or "https://api.openai.com/v1", model)
