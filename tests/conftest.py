import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serve.local import free_port

# No test reaches a model hub; the same loading code runs on models the tests build.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every Ray a test starts (in process, or `ray start --head`) stays on loopback: without this Ray
# replaces 127.0.0.1 by the machine's routable address and listens on every interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


# Under CI a skip is a failure: every tool a test needs (Chromium, PostgreSQL, the real-model wheels) is
# installed by `.ci/run` / `make test`, so a skip there means a missing install step, not a passing test.
# Only a test that needs hardware these machines lack (a GPU) may skip.
_SKIP_OK_UNDER_CI = ("CUDA", "GPU")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() in ("1", "true") and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
        if not any(word in reason for word in _SKIP_OK_UNDER_CI):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI=true (CI installs every tool a test needs): {reason}"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A world built at the tiny size once per test session (about 15 s on 2 cores)."""
    import torch

    from generators.world.build import build_world

    threads = torch.get_num_threads()
    # SYNTH2_TEST_WORLD=DIR: build it there once and reuse it across sessions (build_world reuses a world
    # built with the same settings); a developer's shortcut on a busy machine, unset in CI.
    out = Path(os.environ["SYNTH2_TEST_WORLD"]) if os.environ.get("SYNTH2_TEST_WORLD") else tmp_path_factory.mktemp("world")
    info = build_world(out, size="tiny", seed=0, image_size=32)
    torch.set_num_threads(threads)
    return out, info


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray on loopback for the whole session."""
    import ray

    from pipeline.run import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def world_spec(world, out, **overrides):
    """A small synthesize job on a built world (the demo spec, cut down)."""
    from pathlib import Path

    import yaml

    from pipeline.spec import parse_spec

    d = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "demo.yaml").read_text())
    d["concepts"]["items"] = d["concepts"]["items"][:6]
    d["captions"].update(model=str(world / "lm"), per_concept=6, batch_size=8, min_words=1)
    d["scoring"]["balance"] = {"method": "cap", "cap": 4}
    d["synthesis"].update(prior=str(world / "prior"), encoder={"name": f"local-dir:{world / 'clip'}"}, steps=4,
                          batch_size=8)
    d["output"].update(dir=str(out), shard_size=5, name="t")
    for path, value in overrides.items():
        node = d
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return parse_spec(d)


def kill_marked_processes(marker: str) -> None:
    """Kill every process whose environment holds `marker` (a Ray head renames its processes,
    so their command lines cannot be matched)."""
    from serve.runner import kill_marked

    kill_marked(marker)


# ---------------------------------------------------------------- a Ray head on loopback

ROOT = Path(__file__).resolve().parents[1]
# Headless Chromium for the page tests: $SYNTH2_CHROMIUM, else the first browser on PATH (Debian's `chromium`).
CHROMIUM = next((p for p in (os.environ.get("SYNTH2_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), "")
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def ray_head(tmp_path_factory):
    temp = tmp_path_factory.mktemp("rayhead")
    marker = secrets.token_hex(8)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "SYNTH2_TEST_RAY_HEAD": marker}
    port, dash = free_port(), free_port()
    cmd = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=2", "--include-dashboard=true",
           f"--temp-dir={temp}", "--disable-usage-stats",
           # Fixed default ports (52365, ...) collide with a head a test before this one left in TIME_WAIT.
           f"--dashboard-agent-listen-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
           f"--metrics-export-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    yield f"http://127.0.0.1:{dash}", env
    # Stop only this head (not a Ray this test session started in process): its processes
    # inherited the marker in their environment.
    kill_marked_processes(f"SYNTH2_TEST_RAY_HEAD={marker}")


