"""A bounded schemathesis run (every check) against a real `synth2 serve`: 0 failures.

The service queues but starts nothing (SYNTH2_MAX_RUNNING=0), so a generated spec that passes every rule
costs no CPU; its closed default policy refuses the rest with 422 (tests/serve/schemathesis.toml says why
that is allowed for the two submission routes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.serve.conftest import KEY

HERE = Path(__file__).resolve().parent


def test_schemathesis_all_checks_clean(service):
    service.env_extra.update({"SYNTH2_MAX_RUNNING": "0", "SYNTH2_MAX_JOBS_PER_KEY": "1000"})
    service.start()
    cli = Path(sys.executable).with_name("schemathesis")
    args = [str(cli), "--config-file", str(HERE / "schemathesis.toml"), "--no-color", "run", f"{service.url}/openapi.json",
            "--checks", "all", "--header", f"Authorization: Bearer {KEY}", "--max-examples", "12", "--workers", "1",
            "--seed", "14", "--max-time", "40", "--phases", "examples,coverage,fuzzing", "--request-timeout", "10",
            "--suppress-health-check", "all"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")} | {"NO_COLOR": "1"}
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=service.data_dir)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out)
    assert counts and int(counts[1]) >= 50 and counts[1] == counts[2], out[-3000:]  # every generated case passed
    log = (service.data_dir.parent / f"service-{service.port}.log").read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
