"""Serve a local model over an OpenAI-compatible ``/v1/chat/completions`` endpoint (standard library).

Used as the local stand-in for API models in tests and examples; also handy to share one loaded
model between processes. Greedy unless ``temperature`` is given. Not a production server.

Example:
    >>> server = serve(load_model("default"), port=8000)   # http://127.0.0.1:8000/v1
    >>> server.shutdown()
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from steerlab.models.hf import LanguageModel


def _handler(lm: LanguageModel, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                messages = req["messages"]
                if not isinstance(messages, list) or not messages:
                    raise ValueError("messages must be a non-empty list")
            except (ValueError, KeyError, TypeError) as e:
                return self._send(400, {"error": {"message": f"bad request: {e}"}})
            with lock:  # one generation at a time on the shared model
                text = lm.generate([messages], max_new_tokens=int(req.get("max_tokens") or 128),
                                   temperature=float(req.get("temperature") or 0.0), seed=req.get("seed"))[0]
            self._send(200, {"object": "chat.completion", "model": req.get("model", lm.model_id),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}]})

    return Handler


def serve(lm: LanguageModel, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start serving in a background thread; ``server.server_address`` has the bound port."""
    server = ThreadingHTTPServer((host, port), _handler(lm, threading.Lock()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
