"""One service job in its own process: `python -m serve.worker RUN_DIR`.

RUN_DIR holds `spec.json` (the spec, output.dir already set by the service). The job runs on a
local Ray of its own and leaves `result.json` (status, error, stats) when it ends, so the service
learns how it ended even if it was restarted in between. SIGTERM stops it: the shards already in
its manifest stay valid, and running the same spec again resumes from them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path


def _write_result(run_dir: Path, **result) -> None:
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result | {"finished_at": time.time()}, indent=1))
    os.replace(tmp, run_dir / "result.json")


def _on_sigterm(signum, frame):  # the service's cancel: unwind (run_job records STOPPED) and exit
    raise KeyboardInterrupt("stopped on request")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0]).resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("synth2", "pipeline", "generators", "serve"):
        logging.getLogger(name).setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, _on_sigterm)
    (run_dir / "result.json").unlink(missing_ok=True)

    from pipeline.job import error_line
    from pipeline.model_refs import check_models
    from pipeline.run import ModelError, init_ray, run_spec
    from pipeline.spec import parse_spec

    try:
        spec = parse_spec(json.loads((run_dir / "spec.json").read_text()))
        if problems := check_models(spec):  # before any Ray starts: a job whose models are missing fails at once
            raise ModelError(problems)
        threads = int(os.environ["SYNTH2_JOB_CPUS"]) if os.environ.get("SYNTH2_JOB_CPUS") else None
        inline = os.environ.get("SYNTH2_JOB_EXECUTOR") == "inline"  # the service's job_executor setting
        if spec.kind == "consumer" or inline:  # runs in this process, without Ray; SYNTH2_JOB_CPUS caps torch's threads
            if threads:
                os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        else:
            init_ray(num_cpus=threads)
            signal.signal(signal.SIGTERM, _on_sigterm)  # ray.init installs its own (sys.exit); ours records STOPPED
        stats = run_spec(spec, num_cpus=threads, local=inline)
    except KeyboardInterrupt:
        print("job stopped on request; its finished shards stay valid", flush=True)
        _write_result(run_dir, status="STOPPED", error=None)
        return 130
    except Exception as e:  # noqa: BLE001 -- every failure becomes the job's error message
        traceback.print_exc()
        _write_result(run_dir, status="FAILED", error=error_line(e))  # one line, no ANSI codes, Ray unwrapped
        return 1
    print(json.dumps(stats, indent=1), flush=True)
    _write_result(run_dir, status="SUCCEEDED", error=None, stats=stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
