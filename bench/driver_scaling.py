"""Driver memory and wall time against job size: the same synthesize spec at 10^4, 10^5, 10^6
caption requests, each run as its own `pipeline/run.py` process on a local Ray; the driver's peak
RSS is its kernel high-water mark (VmHWM, the driver process only: Ray's workers and servers are
other processes), read until it exits.

    python bench/driver_scaling.py --world world-tiny [--sizes 10000,100000,1000000] [--budget-s 1100]

Models: the tiny world's (`synth2 world build --size tiny`): its GPT-2 caption LM, CLIP and prior.
Writes bench/results/driver_scaling.json and .png. A size whose run would not fit the budget
(extrapolated from the sizes before it) is skipped and reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def spec_for(world: Path, out: Path, requests: int) -> dict:
    d = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    n = len(d["concepts"]["items"])
    d["name"] = f"scale-{requests}"
    d["captions"].update(model=str(world / "lm"), per_concept=-(-requests // n), batch_size=256,
                         sampling={"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 12, "seed": 0})
    d["synthesis"].update(prior=str(world / "prior"), encoder={"name": f"local-dir:{world / 'clip'}"}, steps=4,
                          guidance_scale=1.0, batch_size=512)
    d["scoring"]["balance"] = {"method": "cap", "cap": 200}
    d["output"].update(dir=str(out), shard_size=1000)
    d["resources"] = {"caption": {"num_cpus": 0.75, "concurrency": 2}, "score": {"num_cpus": 0.5, "concurrency": 1},
                      "synthesize": {"num_cpus": 1, "concurrency": 2}}
    return d


def hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_one(world: Path, tmp: Path, requests: int, timeout: float) -> dict:
    out = tmp / f"job-{requests}"
    spec = spec_for(world, out, requests)
    spec_file = tmp / f"spec-{requests}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "pipeline" / "run.py"), "--spec", str(spec_file)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, timeline = 0, []
    while proc.poll() is None:
        kb = hwm_kb(proc.pid)
        if kb:
            peak = max(peak, kb)
            timeline.append((round(time.perf_counter() - t, 1), kb))
        if time.perf_counter() - t > timeout:
            proc.kill()
            break
        time.sleep(0.25)
    log = proc.stdout.read()
    seconds = time.perf_counter() - t
    stats = json.loads((out / "stats.json").read_text()) if (out / "stats.json").exists() else {}
    progress = json.loads((out / "progress.json").read_text()) if (out / "progress.json").exists() else {}
    result = {"requests": stats.get("requested", spec["captions"]["per_concept"] * len(spec["concepts"]["items"])),
              "returncode": proc.returncode, "seconds": round(seconds, 1), "driver_peak_rss_mb": round(peak / 1024, 1),
              "samples": stats.get("samples"), "after_dedup": stats.get("after_dedup"),
              "stage_rates_per_s": {k: v.get("rate_per_s") for k, v in progress.get("stages", {}).items()},
              "rss_timeline_mb": [(s, round(kb / 1024, 1)) for s, kb in timeline[:: max(1, len(timeline) // 60)]],
              # when and on which code this row was measured (rows of several runs share a file, see --add)
              "measured": time.strftime("%Y-%m-%d", time.gmtime()), "commit": _commit(),
              "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}
    if proc.returncode != 0:
        result["log_tail"] = log[-2000:]
    shutil.rmtree(out, ignore_errors=True)
    return result


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if r.get("returncode") == 0]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    x = [r["requests"] for r in runs]
    ax[0].plot(x, [r["driver_peak_rss_mb"] for r in runs], "o-")
    ax[0].set(xscale="log", xlabel="caption requests", ylabel="driver peak RSS (MB)", ylim=(0, None),
              title="driver memory")
    ax[1].plot(x, [r["seconds"] for r in runs], "o-")
    ax[1].set(xscale="log", yscale="log", xlabel="caption requests", ylabel="wall time (s)", title="wall time")
    fig.suptitle(f"synth2 job on a local Ray, tiny world models ({results['machine']['cpus']} CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _commit() -> str | None:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="world-tiny")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--budget-s", type=float, default=1100, help="wall time for all sizes together")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "driver_scaling.json"))
    ap.add_argument("--add", action="store_true", help="keep the runs already in --out (other sizes) and add these")
    args = ap.parse_args()
    world = Path(args.world).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="synth2-scaling-"))
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_avg_at_start": os.getloadavg()},
               "models": {"captions": "tiny world GPT-2 LM (world/lm)", "encoder": "tiny world CLIP (world/clip)",
                          "prior": "tiny world PriorTransformer (world/prior)"},
               "spec": {k: v for k, v in spec_for(world, tmp, 1).items() if k in ("captions", "synthesis", "resources")},
               "runs": [], "skipped": []}
    if args.add and Path(args.out).exists():
        before = json.loads(Path(args.out).read_text())
        results["runs"] = before.get("runs", [])
        results["earlier_sessions_machine"] = before.get("machine")
    sizes = [int(s) for s in args.sizes.split(",")]
    concepts = len(yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["concepts"]["items"])
    remeasured = {-(-n // concepts) * concepts for n in sizes}  # the request counts spec_for rounds each size to
    results["runs"] = [r for r in results["runs"] if r["requests"] not in remeasured]
    started = time.perf_counter()
    rate = None  # seconds per request, from the last size
    for n in sizes:
        left = args.budget_s - (time.perf_counter() - started)
        guess = rate * n if rate else None
        if guess and guess > left:
            results["skipped"].append({"requests": n, "reason": f"extrapolated {guess:.0f} s > {left:.0f} s left"})
            continue
        r = run_one(world, tmp, n, timeout=max(60.0, left))
        results["runs"].append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "rss_timeline_mb"}), flush=True)
        if r["returncode"] == 0:
            rate = r["seconds"] / n
    results["runs"].sort(key=lambda r: r["requests"])
    ok = [r for r in results["runs"] if r["returncode"] == 0]
    if len(ok) >= 2:
        results["rss_growth_smallest_to_largest"] = round(ok[-1]["driver_peak_rss_mb"] / ok[0]["driver_peak_rss_mb"], 3)
        results["rss_growth_between"] = [ok[0]["requests"], ok[-1]["requests"]]
    results["load_avg_at_end"] = os.getloadavg()
    # no machine paths in committed results: the world is WORLD, scratch directories $TMPDIR
    text = json.dumps(results, indent=1).replace(str(world), "WORLD").replace(str(tmp), "$TMPDIR")
    Path(args.out).write_text(text)
    plot(results, Path(args.out).with_suffix(".png"))
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
