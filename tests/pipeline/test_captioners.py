"""Caption backends: cleaning, seeded HF sampling, and the OpenAI-compatible client against a
small server on loopback that answers, fails, stalls and returns garbage."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generators.captioners import CaptionBackendError, Completion, HFCaptioner, OpenAICaptioner, clean_caption


@pytest.mark.parametrize("raw,finished,expected", [
    (" a red circle\n", True, ("a red circle", None)),
    ("Caption: \"two blue stars\"\nmore text", True, ("two blue stars", None)),
    ("a red circle on the", False, (None, "truncated")),
    ("\n", True, (None, "empty")),
    ("red", True, (None, "too_short")),
    (" ".join(["word"] * 80), True, (None, "too_long")),
])
def test_clean_caption(raw, finished, expected):
    assert clean_caption(Completion(raw, finished), min_words=2, max_words=64) == expected


def test_failed_request_keeps_its_reason():
    assert clean_caption(Completion("", False, error="request_failed"), 1, 10) == (None, "request_failed")


def test_hf_sampling_depends_on_the_seed_not_the_batch(tiny_world):
    out, _ = tiny_world
    cap = HFCaptioner(str(out / "lm"), temperature=1.0, top_p=0.9, max_new_tokens=12)
    prompts = ["Concepts: red circle\nCaption:", "Concepts: blue star, two\nCaption:", "Concepts: pink square\nCaption:"]
    full = cap.complete(prompts, [1, 2, 3])
    alone = cap.complete(prompts[1:2], [2])
    assert alone[0].text == full[1].text
    again = cap.complete(prompts, [1, 2, 3])
    assert [c.text for c in again] == [c.text for c in full]
    other = cap.complete(prompts, [4, 5, 6])
    assert [c.text for c in other] != [c.text for c in full]


def test_hf_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(CaptionBackendError, match="cannot load caption model"):
        HFCaptioner(str(tmp_path / "no-such-model"))


class _Server:
    """An OpenAI-compatible server on 127.0.0.1 whose behaviour is chosen by the URL's first part."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                mode = self.path.strip("/").split("/")[0]
                outer.calls[mode] = outer.calls.get(mode, 0) + 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if mode == "fail" or (mode == "flaky" and outer.calls[mode] % 2 == 1):
                    return self._send(500, b'{"error": "boom"}')
                if mode == "stall":
                    time.sleep(1.0)
                if mode == "garbage":
                    return self._send(200, b"this is not json")
                if mode == "nochoices":
                    return self._send(200, b'{"choices": []}')
                if mode == "refuse":
                    return self._send(401, b'{"error": "bad key"}')
                if self.path.endswith("/chat/completions"):
                    content = f"a caption for {body['messages'][0]['content']} seed {body['seed']}"
                    out = {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
                else:
                    out = {"choices": [{"text": f" a caption for {body['prompt']} seed {body['seed']}\n",
                                        "finish_reason": "stop"}]}
                self._send(200, json.dumps(out).encode())

            def _send(self, code, data):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the stalling mode writes to clients that already timed out and left

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, mode):
        return f"http://127.0.0.1:{self.port}/{mode}/v1"


@pytest.fixture(scope="module")
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


def _client(url, **kw):
    return OpenAICaptioner(url, "test-model", **{"timeout_s": 0.3, "max_retries": 2, "backoff_s": 0.01, **kw})


def test_completions_and_chat(server):
    got = _client(server.url("ok")).complete(["red", "blue"], [1, 2])
    assert [c.text.strip() for c in got] == ["a caption for red seed 1", "a caption for blue seed 2"]
    chat = _client(server.url("ok"), api="chat").complete(["pink"], [7])
    assert chat[0].text == "a caption for pink seed 7" and chat[0].finished


def test_retries_recover_from_transient_failures(server):
    got = _client(server.url("flaky"), concurrency=1).complete(["x", "y"], [1, 2])
    assert all(c.error is None for c in got)
    assert server.calls["flaky"] == 4


def test_persistent_failures_stalls_and_garbage_are_counted_not_fatal(server):
    assert [c.error for c in _client(server.url("fail")).complete(["x"], [1])] == ["request_failed"]
    assert server.calls["fail"] == 3  # the first try and two retries
    assert [c.error for c in _client(server.url("stall")).complete(["x"], [1])] == ["request_failed"]
    assert [c.error for c in _client(server.url("garbage")).complete(["x"], [1])] == ["bad_response"]
    assert [c.error for c in _client(server.url("nochoices")).complete(["x"], [1])] == ["bad_response"]


def test_unreachable_or_refusing_server_is_a_clear_error(server):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(CaptionBackendError, match="cannot reach the caption server"):
        _client(f"http://127.0.0.1:{port}/v1").complete(["x"], [1])
    with pytest.raises(CaptionBackendError, match="HTTP 401"):
        _client(server.url("refuse")).complete(["x"], [1])
