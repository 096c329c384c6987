"""kill -9 torture: a Ray job's driver killed at random moments in every phase, then resumed; the
result must be exactly the uninterrupted run's.

    python bench/kill_torture.py --world world-tiny [--kills 20]

1. one uninterrupted run (`pipeline/run.py`, local Ray) gives the reference shards;
2. the same spec in another directory is started, and its driver SIGKILLed `--kills` times:
   kill k aims at phase caption / select / synthesize / shards in turn (waiting until progress.json
   shows that phase running, then a random 0-3 s more; "shards": until the run has committed a shard
   of its own to the manifest, then at once); after each kill every process of that run (its
   local Ray too) is killed, as when a node dies;
3. a last run finishes the job. Compared with the reference: samples lost, samples duplicated,
   shards whose sha256 differs. Writes bench/results/kill_torture.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts.shards import Manifest, iter_samples, sha256_file  # noqa: E402
from serve.runner import kill_marked  # noqa: E402

PHASES = ("caption", "select", "synthesize")
TARGETS = PHASES + ("shards",)  # "shards": synthesize with at least one shard already committed to the manifest


def spec_for(world: Path, out: Path, per_concept: int) -> dict:
    d = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    d["name"] = "torture"
    d["captions"].update(model=str(world / "lm"), per_concept=per_concept, batch_size=32)
    d["synthesis"].update(prior=str(world / "prior"), encoder={"name": f"local-dir:{world / 'clip'}"}, steps=8,
                          batch_size=16)
    d["scoring"]["balance"] = {"method": "cap", "cap": 60}
    d["output"].update(dir=str(out), shard_size=25, name="tt")
    d["resources"] = {"caption": {"num_cpus": 0.75, "concurrency": 2}, "score": {"num_cpus": 0.5, "concurrency": 1},
                      "synthesize": {"num_cpus": 1, "concurrency": 2}}
    return d


def start(spec_file: Path, marker: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "SYNTH2_CHUNK_TARGET": "128", "SYNTH2_TORTURE": marker}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, str(ROOT / "pipeline" / "run.py"), "--spec", str(spec_file)], cwd=ROOT,
                            env=env, stdout=open(spec_file.with_suffix(f".{marker}.log"), "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # each run's log kept next to its spec


def phase_now(out: Path, since: float = 0.0) -> str | None:
    """The latest phase running, as this run (progress written after `since`) reports it."""
    try:
        progress = json.loads((out / "progress.json").read_text())
        stages = progress["stages"]
    except (OSError, ValueError, KeyError):
        return None
    if progress.get("updated_at", 0) < since:  # the file of the run killed before
        return None
    running = [p for p in PHASES if stages.get(p, {}).get("status") == "RUNNING"]
    return running[-1] if running else None


def shards(out: Path) -> dict[str, str]:
    m = Manifest.load(out)
    return {s.name: s.sha256 for s in m.shards} if m else {}


def _log_tail(tmp: Path, marker: str, n: int = 1500) -> str:
    log = tmp / f"tortured.{marker}.log"
    text = log.read_text(errors="replace")[-n:] if log.exists() else ""
    return text.replace(str(tmp), "$TMPDIR").replace(str(ROOT), ".")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="world-tiny")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--per-concept", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "kill_torture.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    world = Path(args.world).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="synth2-torture-"))
    ref_dir, job_dir = tmp / "reference", tmp / "tortured"
    for d in (ref_dir, job_dir):
        (tmp / f"{d.name}.yaml").write_text(yaml.safe_dump(spec_for(world, d, args.per_concept)))

    t = time.perf_counter()
    marker = secrets.token_hex(6)
    ref = start(tmp / "reference.yaml", marker)
    ref.wait()
    kill_marked(f"SYNTH2_TORTURE={marker}")
    ref_seconds = time.perf_counter() - t
    assert ref.returncode == 0, "the reference run failed"
    reference = shards(ref_dir)

    kills = []
    t0 = time.perf_counter()
    for k in range(args.kills):
        target = TARGETS[min(len(TARGETS) - 1, k * len(TARGETS) // args.kills)]
        listed_before = len(shards(job_dir))
        marker = secrets.token_hex(6)
        proc = start(tmp / "tortured.yaml", marker)
        t, wall = time.perf_counter(), time.time()
        seen = None
        while proc.poll() is None and time.perf_counter() - t < 600:
            seen = phase_now(job_dir, wall)
            if target == "shards":
                m = Manifest.load(job_dir)
                if m is not None and not m.complete and len(m.shards) > listed_before:
                    break  # this run has committed a shard of its own: kill now, mid-way through the rest
            elif seen is not None and PHASES.index(seen) >= PHASES.index(target):
                time.sleep(rng.uniform(0, 3.0 if target != "select" else 0.5))
                break
            time.sleep(0.1)
        at = phase_now(job_dir, wall)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kill_marked(f"SYNTH2_TORTURE={marker}")
        entry = {"kill": k, "aimed_at": target, "phase_at_kill": at, "after_s": round(time.perf_counter() - t, 1),
                 "job_had_finished": finished and proc.returncode == 0, "shards_listed": len(shards(job_dir))}
        if finished and proc.returncode != 0:  # the run died by itself: keep why, and go on resuming
            entry["exited_by_itself"] = {"returncode": proc.returncode, "log_tail": _log_tail(tmp, marker)}
        kills.append(entry)
        print(json.dumps(entry), flush=True)
        if entry["job_had_finished"]:
            break
    for _attempt in range(3):  # the last run finishes the job (a run that dies by itself is recorded and retried)
        marker = secrets.token_hex(6)
        last = start(tmp / "tortured.yaml", marker)
        last.wait()
        kill_marked(f"SYNTH2_TORTURE={marker}")
        if last.returncode == 0:
            break
        kills.append({"kill": "final", "exited_by_itself": {"returncode": last.returncode,
                                                            "log_tail": _log_tail(tmp, marker)}})
    torture_seconds = time.perf_counter() - t0

    got = shards(job_dir)
    ref_keys = [s["__key__"] for s in iter_samples(ref_dir)]
    keys = [s["__key__"] for s in iter_samples(job_dir)]
    dup = sum(c - 1 for c in Counter(keys).values() if c > 1)
    result = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "run": " ".join(["bench/kill_torture.py", *sys.argv[1:]]).replace(str(world), "WORLD"),
        "spec": {"requests": args.per_concept * 48, "shard_size": 25, "chunk_rows": 128},
        "reference_seconds": round(ref_seconds, 1), "torture_seconds": round(torture_seconds, 1),
        "kills": len([x for x in kills if x["kill"] != "final" and not x["job_had_finished"]
                      and "exited_by_itself" not in x]),
        "kills_by_phase": dict(Counter(x["phase_at_kill"] for x in kills if x["kill"] != "final"
                                       and not x["job_had_finished"] and "exited_by_itself" not in x)),
        "kills_with_shards_committed": len([x for x in kills if x["kill"] != "final" and x.get("shards_listed")
                                            and not x["job_had_finished"] and "exited_by_itself" not in x]),
        "runs_that_exited_by_themselves": len([x for x in kills if "exited_by_itself" in x]),
        "final_returncode": last.returncode,
        "samples_reference": len(ref_keys), "samples": len(keys),
        "lost": len(set(ref_keys) - set(keys)), "duplicated": dup, "extra": len(set(keys) - set(ref_keys)),
        "shards_reference": len(reference), "shards": len(got),
        "shards_sha256_differ": sorted(n for n in reference if got.get(n) != reference[n]),
        "shards_on_disk_match_manifest": all(sha256_file(job_dir / n) == h for n, h in got.items()),
        "kill_log": kills,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "kill_log"}, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
