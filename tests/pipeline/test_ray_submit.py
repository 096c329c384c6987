"""The README's cluster walk-through, run exactly as written in a copy of the repository's files; and a
`ray start --head` with token auth refusing a submitter without the token."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from contracts.shards import Manifest, sha256_file
from tests.conftest import RAY, ROOT, kill_marked_processes

# The README's advice for a head that has just started ("No available agent to submit job": run the submit
# again), as a wrapper around `ray job submit`; every other `ray` command runs as written.
RETRY_FRESH_HEAD = r"""
ray() {
  if [ "$1 $2" != "job submit" ]; then command ray "$@"; return; fi
  local out
  for _ in $(seq 60); do
    if out=$(command ray "$@" 2>&1); then echo "$out"; return 0; fi
    grep -q "No available agent" <<<"$out" || { echo "$out"; return 1; }
    sleep 2
  done
  echo "$out"; return 1
}
"""


def readme_block(marker: str) -> str:
    """The bash block that follows `<!-- marker -->` in the README."""
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {re.escape(marker)} -->\n```bash\n(.*?)\n```", text, re.S)
    assert m, f"README has no `<!-- {marker} -->` bash block"
    return m.group(1)


def fresh_copy(dest: Path) -> Path:
    """What a fresh clone holds: the tracked files and the new ones git does not ignore."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


# the README's head listens on Ray's default ports: GCS, dashboard, dashboard agent (job submissions go to it)
DEFAULT_PORTS = {6379: "GCS", 8265: "dashboard", 52365: "dashboard agent"}


@pytest.fixture
def no_in_process_ray():
    """A Ray this test session runs in process (the `ray_local` fixture) holds the dashboard agent's
    default port 52365, whatever its other ports: stopped for this test, started again after it."""
    import ray

    running = ray.is_initialized()
    if running:
        ray.shutdown()
    yield
    if running:
        from pipeline.run import init_ray

        init_ray(num_cpus=2)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_readme_cluster_walkthrough(tiny_world, tmp_path, no_in_process_ray):
    world, _ = tiny_world
    busy = [f"{p} ({what})" for p, what in DEFAULT_PORTS.items() if not _port_free(p)]
    assert not busy, f"another Ray on this machine holds the README head's default ports: {', '.join(busy)}"
    repo = fresh_copy(tmp_path / "synth2")
    (repo / ".venv").symlink_to(ROOT / ".venv")  # `make test` built it; the block activates it
    shutil.copytree(world, repo / "world", ignore=shutil.ignore_patterns("data", "_work"))  # what `make demo` builds
    marker = f"SYNTH2_TEST_README_HEAD={os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VIRTUAL_ENV"))}
    # Ray's files under a short private root (its socket paths must stay under 108 bytes), so no other
    # test finds this head as "the machine's running cluster"; HOME: no ~/.ray token of the developer's
    ray_tmp = tempfile.mkdtemp(prefix="synth2-rd-")
    env.update({"SYNTH2_TEST_README_HEAD": str(os.getpid()), "RAY_TMPDIR": ray_tmp, "HOME": str(tmp_path / "home")})
    try:
        script = RETRY_FRESH_HEAD + readme_block("cluster-walkthrough")
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=600)
    finally:
        kill_marked_processes(marker)  # the README's `ray stop` would stop every Ray on the machine
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, log
    assert "succeeded" in log.lower()
    job = repo / "runs" / "cluster-check"
    m = Manifest.load(job)
    assert m.complete and m.samples > 0
    assert all(sha256_file(job / s.name) == s.sha256 for s in m.shards)
    assert json.loads((job / "progress.json").read_text())["status"] == "SUCCEEDED"


def test_submit_without_the_token_is_refused(ray_head, tmp_path):
    address, env = ray_head
    bare = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    bare["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    r = subprocess.run([RAY, "job", "list", "--address", address], env=bare, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "token" in (r.stdout + r.stderr).lower()
