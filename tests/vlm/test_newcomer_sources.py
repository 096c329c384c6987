"""Issue #17 point 4: `synth2 vlm train --data http://…/v1/jobs/ID` without a key, or with a wrong id, ends in
one clear error line (no traceback)."""

from __future__ import annotations

import http.server
import threading

import pytest
from click.testing import CliRunner


class _Service(http.server.BaseHTTPRequestHandler):
    """A stand-in for the service's manifest route: 401 without the right key, 404 for an unknown job."""

    def do_GET(self):  # noqa: N802
        if self.headers.get("Authorization") != "Bearer right-key":
            self.send_response(401)
        elif not self.path.startswith("/v1/jobs/known/"):
            self.send_response(404)
        else:
            self.send_response(500)
        self.end_headers()
        self.wfile.write(b'{"detail": "BODY"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def service(monkeypatch):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    monkeypatch.setenv("SYNTH2_URL", url)
    monkeypatch.delenv("SYNTH2_API_KEY", raising=False)
    yield url
    srv.shutdown()


def _train(url: str, tmp_path) -> tuple[int, str]:
    from synth2.cli import main

    r = CliRunner().invoke(main, ["vlm", "train", "--data", f"{url}/v1/jobs/abc@0.3", "--decoder", "unused",
                                  "--out", str(tmp_path / "vlm"), "--steps", "1"])
    return r.exit_code, r.output


def test_no_key_and_wrong_id_are_one_line(service, tmp_path, monkeypatch):
    code, out = _train(service, tmp_path)
    assert code == 1 and "Traceback" not in out
    (line,) = out.strip().splitlines()
    assert line == ("Error: 127.0.0.1 answered HTTP 401 for /v1/jobs/abc/manifest: the service needs an API key; "
                    f"set SYNTH2_API_KEY (and SYNTH2_URL, if the service is not {service})")
    monkeypatch.setenv("SYNTH2_API_KEY", "right-key")
    code, out = _train(service, tmp_path)
    (line,) = out.strip().splitlines()
    assert code == 1 and line.startswith("Error: 127.0.0.1 answered HTTP 404 for /v1/jobs/abc/manifest: no such job")
    monkeypatch.setenv("SYNTH2_URL", "http://127.0.0.1:1")  # the key is for another origin: not sent
    code, out = _train(service, tmp_path)
    (line,) = out.strip().splitlines()
    assert code == 1 and "not sent (SYNTH2_API_KEY goes only to SYNTH2_URL, http://127.0.0.1:1)" in line
    assert "BODY" not in out


def test_unreachable_service_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("SYNTH2_API_KEY", raising=False)
    code, out = _train("http://127.0.0.1:1", tmp_path)
    (line,) = out.strip().splitlines()
    assert code == 1 and line.startswith("Error: cannot reach the data source (") and "Traceback" not in out
