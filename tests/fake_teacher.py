"""A fault-injecting OpenAI-compatible teacher on loopback, in a thread (http.server: no dependencies).

The fault is chosen by a word in the last user message, and by how many times the server has seen that exact
message, so it does not depend on thread timing:
  RATE429  the first attempt gets 429 with Retry-After: 0, then an answer
  ERR500   always 500                     SLOW     the first attempt outlasts the client's timeout
  BADJSON  always a body that is not JSON EMPTY    always empty content
  REFUSE   "I'm sorry, but I cannot help with that."
  DELAY    every answer waits `delay` seconds (the kill -9 test needs a run slow enough to kill)
Anything else: "Answer: <the message>". Usage fields count words.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeTeacher:
    def __init__(self, slow: float = 0.5, delay: float = 0.0, reply=None):
        self.seen: Counter = Counter()
        self.slow, self.delay, self.reply = slow, delay, reply
        self.lock = threading.Lock()
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, payload = fake.answer(body)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: dict) -> tuple[int, dict, bytes]:
        text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        with self.lock:
            self.seen[text] += 1
            self.requests += 1
            attempt = self.seen[text]
        if "RATE429" in text and attempt == 1:
            return 429, {"Retry-After": "0"}, b'{"error": {"message": "slow down"}}'
        if "ERR500" in text:
            return 500, {}, b'{"error": {"message": "boom"}}'
        if "SLOW" in text and attempt == 1:
            time.sleep(self.slow)
        if "BADJSON" in text:
            return 200, {}, b'{"choices": [ {"message": '
        if "DELAY" in text or self.delay:
            time.sleep(self.delay)
        content = "" if "EMPTY" in text else self.reply(text) if self.reply else f"Answer: {text}"
        if "REFUSE" in text:
            content = "I'm sorry, but I cannot help with that."
        n = len(text.split())
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "text": content,
                  "finish_reason": "stop"}  # fmt: skip
        usage = {"prompt_tokens": n, "completion_tokens": len(content.split()), "total_tokens": 0}
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"choices": [choice], "usage": usage}).encode(),
        )

    def close(self):
        self.server.shutdown()
        self.server.server_close()
