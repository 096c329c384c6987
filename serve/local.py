"""A `synth2 serve` process on 127.0.0.1, for the tests and the benches: start it, wait until
`/healthz` answers, stop it.

    svc = LocalService(data_dir, env_extra={"SYNTH2_API_KEYS": key}).start()
    ...
    svc.stop()

It listens on loopback only. Its settings come from the environment (serve/settings.py): this
process's own, then `defaults`, then `env_extra`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@dataclass
class LocalService:
    """A `synth2 serve` process on 127.0.0.1 over `data_dir`; its log is `service-PORT.log` next to
    `data_dir`."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env_extra: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def defaults(self) -> dict:
        """Settings under `env_extra`; a subclass adds its own (the tests' keys and roots)."""
        return {}

    @property
    def env(self) -> dict:
        """The service's environment; SYNTH2_URL also points `synth2` client commands at it."""
        return {**os.environ, "SYNTH2_DATA_DIR": str(self.data_dir), "SYNTH2_URL": self.url, **self.defaults,
                **self.env_extra}

    def start(self, timeout: float = 60) -> LocalService:
        """Start the process and wait until `/healthz` answers 200."""
        log = open(self.data_dir.parent / f"service-{self.port}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "synth2.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError(f"the service did not come up on {self.url} within {timeout} s; see {log.name}")

    def kill(self) -> None:
        """SIGKILL: the service dies without any chance to clean up (jobs it started go on)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited within 15 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
