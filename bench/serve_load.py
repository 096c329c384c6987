"""The service under load, on loopback: latency of `GET /v1/jobs/{id}` and `POST /v1/jobs` at a few
concurrency levels, and shard download throughput over HTTP against reading the same files from
disk, in one run against one real `synth2 serve` process on the same machine.

    python bench/serve_load.py [--quick]

No job runs during the bench. Before the service starts, two rows go into its job store:

  * a RUNNING job whose process is a `sleep` this script owns. The service re-attaches to it on
    start-up, and with SYNTH2_MAX_RUNNING=1 every submitted job stays PENDING behind it, so
    `POST /v1/jobs` measures the HTTP path (validation, duplicate and quota checks, one SQLite
    insert) and never a pipeline;
  * a SUCCEEDED job whose output directory holds real tar shards of random bytes and a
    manifest.json (contracts.shards.Manifest), which the shard route serves.

POSTs are the demo spec cut down as in tests/conftest.py::world_spec, each with its own
`captions.sampling.seed` (an identical active spec is refused with 409). The service caps
SYNTH2_MAX_JOBS_PER_KEY at 1000, so each POST level submits with an API key of its own.

The load generator (asyncio + httpx) runs in this process and shares the cores with the service:
figures are for client and server together, and the ratios matter more than the absolutes.

Writes bench/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts.shards import Manifest, ShardInfo, sample_key, sha256_file  # noqa: E402
from pipeline.spec import parse_spec, spec_hash  # noqa: E402
from serve.local import LocalService  # noqa: E402
from serve.settings import hash_key  # noqa: E402
from serve.store import JobStore  # noqa: E402

MAIN_KEY = "bench-key-main-0123456789"
CHUNK = 1 << 20
MB = 1e6  # MB/s below are 10^6 bytes per second
# The POSTs' models: paths that do not exist (no job runs), inside the service's SYNTH2_MODEL_ROOTS so
# that its policy (serve/policy.py) lets the spec through to the queue.
WORLD = "/nonexistent/bench-world"


# ------------------------------------------------------------------ setup


def demo_body(seed: int) -> dict:
    """configs/demo.yaml cut down as in tests/conftest.py::world_spec; the model paths do not exist
    (nothing runs), and `seed` makes each spec distinct."""
    d = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    world = WORLD
    d["concepts"]["items"] = d["concepts"]["items"][:6]
    d["captions"].update(model=f"{world}/lm", per_concept=6, batch_size=8, min_words=1)
    d["captions"]["sampling"]["seed"] = seed
    d["scoring"]["balance"] = {"method": "cap", "cap": 4}
    d["synthesis"].update(prior=f"{world}/prior", encoder={"name": f"local-dir:{world}/clip"}, steps=4, batch_size=8)
    d["output"].update(dir="/unused", shard_size=5, name="t")
    d["name"] = "bench"
    return d


def write_shards(out: Path, count: int, mib: int, seed: int = 0) -> Manifest:
    """`count` real tar shards of about `mib` MiB of random bytes each (256 KiB per sample)."""
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    per_sample = 256 << 10
    n_samples = max(1, (mib << 20) // per_sample)
    shards = []
    for k in range(count):
        name = f"bench-{k:06d}.tar"
        with tarfile.open(out / name, "w") as tar:
            for i in range(n_samples):
                data = rng.bytes(per_sample)
                info = tarfile.TarInfo(f"{sample_key('bench', k * n_samples + i)}.bin")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        shards.append(ShardInfo(name=name, samples=n_samples, bytes=(out / name).stat().st_size,
                                sha256=sha256_file(out / name), first_index=k * n_samples))
    m = Manifest(name="bench", shards=shards, complete=True)
    m.save(out)
    return m


def seed_store(db_url: str, data: Path, shard_dir: Path, blocker: subprocess.Popen) -> tuple[str, str]:
    """The blocker (RUNNING, its process a `sleep`) and the finished job with the shards."""
    store = JobStore(db_url)
    try:
        kid = hash_key(MAIN_KEY)[:8]
        spec = parse_spec(demo_body(0))
        body, h = spec.model_dump(mode="json"), spec_hash(spec)
        now = time.time()
        b = store.create(name="bench-blocker", key_id=kid, spec=body, spec_hash="blocker-" + h[8:],
                         output_dir=str(data / "jobs" / "bench-blocker"), runner="local")
        handle = f"{blocker.pid}:{psutil.Process(blocker.pid).create_time():.3f}"
        store.transition(b["id"], "PENDING", status="RUNNING", started_at=now, attempts=1, handle=handle)
        s = store.create(name="bench-shards", key_id=kid, spec=body, spec_hash=h, output_dir=str(shard_dir),
                         runner="local")
        store.transition(s["id"], "PENDING", status="SUCCEEDED", started_at=now - 60, finished_at=now, attempts=1)
        return b["id"], s["id"]
    finally:
        store.close()


# ------------------------------------------------------------------ latency


def client(svc: LocalService) -> httpx.Client:
    return httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {MAIN_KEY}"}, timeout=60,
                        trust_env=False)


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def latency_stats(lat: list[float], codes: Counter, wall: float, server_cpu: float, client_cpu: float) -> dict:
    a = np.asarray(lat) * 1000
    n = len(lat)
    return {"requests": n, "wall_s": round(wall, 3), "req_per_s": round(n / wall, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "mean_ms": round(float(a.mean()), 2),
            "max_ms": round(float(a.max()), 2), "status": {str(k): v for k, v in sorted(codes.items(), key=str)},
            "server_cpu_ms_per_req": round(server_cpu * 1000 / n, 3),
            "client_cpu_ms_per_req": round(client_cpu * 1000 / n, 3)}


async def run_level(svc: LocalService, send, n: int, conc: int, cap_s: float, warmup: int) -> dict:
    """`n` requests by `conc` workers, each with a client and keep-alive connection of its own and one
    request at a time, stopping early at `cap_s`. (One AsyncClient pooling all `conc` connections
    costs the client about 4x the CPU per request at 32 connections, and the client shares the cores.)"""
    clients = [httpx.AsyncClient(base_url=svc.url, limits=httpx.Limits(max_connections=1), timeout=60,
                                 trust_env=False) for _ in range(conc)]
    try:
        w = max(warmup, conc)  # every client connects before the clock starts
        await asyncio.gather(*(send(clients[k % conc], None) for k in range(w)))
        lat: list[float] = []
        codes: Counter = Counter()
        nxt = 0
        deadline = time.perf_counter() + cap_s

        async def worker(client: httpx.AsyncClient):
            nonlocal nxt
            while nxt < n and time.perf_counter() < deadline:
                i, nxt = nxt, nxt + 1
                t = time.perf_counter()
                try:
                    code = (await send(client, i)).status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                lat.append(time.perf_counter() - t)
                codes[code] += 1

        s0, c0, t0 = cpu_s(svc.proc.pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        wall = time.perf_counter() - t0
        out = latency_stats(lat, codes, wall, cpu_s(svc.proc.pid) - s0, time.process_time() - c0)
        out["stopped_by_time_cap"] = len(lat) < n
        return out
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def get_sender(job_id: str):
    headers = {"Authorization": f"Bearer {MAIN_KEY}"}

    async def send(client: httpx.AsyncClient, i: int | None) -> httpx.Response:
        return await client.get(f"/v1/jobs/{job_id}", headers=headers)

    return send


class Seeds:
    def __init__(self) -> None:
        self.next = 1

    def bodies(self, n: int) -> list[bytes]:
        base = demo_body(0)
        out = []
        for _ in range(n):
            base["captions"]["sampling"]["seed"] = self.next
            self.next += 1
            out.append(json.dumps(base).encode())
        return out


def post_sender(seeds: Seeds, key: str, n: int, warmup: int):
    bodies, warm = seeds.bodies(n), seeds.bodies(warmup)
    hdr = {"content-type": "application/json"}
    headers = hdr | {"Authorization": f"Bearer {key}"}
    warm_headers = hdr | {"Authorization": f"Bearer {MAIN_KEY}"}  # warm-ups do not count against the level's key

    async def send(client: httpx.AsyncClient, i: int | None) -> httpx.Response:
        if i is None:
            return await client.post("/v1/jobs", content=warm.pop() if warm else seeds.bodies(1)[0],
                                     headers=warm_headers)
        return await client.post("/v1/jobs", content=bodies[i], headers=headers)

    return send


# ------------------------------------------------------------------ throughput


def disk_read(path: Path) -> int:
    n = 0
    with open(path, "rb", buffering=0) as f:
        while block := f.read(CHUNK):
            n += len(block)
    return n


def disk_pass(paths: list[Path], streams: int) -> tuple[int, float]:
    t = time.perf_counter()
    if streams == 1:
        n = sum(disk_read(p) for p in paths)
    else:
        with ThreadPoolExecutor(streams) as ex:
            n = sum(ex.map(disk_read, paths))
    return n, time.perf_counter() - t


async def http_pass(svc: LocalService, job_id: str, names: list[str], streams: int) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {MAIN_KEY}"}
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(base_url=svc.url, headers=headers, limits=limits, timeout=60,
                                 trust_env=False) as client:
        async def one(name: str) -> int:
            n = 0
            async with client.stream("GET", f"/v1/jobs/{job_id}/shards/{name}") as r:
                if r.status_code != 200:
                    raise RuntimeError(f"shard {name}: HTTP {r.status_code}")
                async for block in r.aiter_bytes(CHUNK):
                    n += len(block)
            return n

        await client.get("/healthz")  # connects
        t = time.perf_counter()
        if streams == 1:
            n = 0
            for name in names:
                n += await one(name)
        else:
            sem = asyncio.Semaphore(streams)

            async def limited(name):
                async with sem:
                    return await one(name)

            n = sum(await asyncio.gather(*(limited(x) for x in names)))
        return n, time.perf_counter() - t


def curl_pass(svc: LocalService, job_id: str, names: list[str]) -> tuple[int, float] | None:
    """The same downloads by curl (no Python client): separates client cost from the server's."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    t = time.perf_counter()
    n = 0
    for name in names:
        r = subprocess.run([curl, "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{size_download}",
                            "-H", f"Authorization: Bearer {MAIN_KEY}", f"{svc.url}/v1/jobs/{job_id}/shards/{name}"],
                           capture_output=True, text=True, check=True, timeout=120)
        n += int(float(r.stdout.strip()))
    return n, time.perf_counter() - t


def rates(samples: list[tuple[int, float]]) -> dict:
    mbs = [n / s / MB for n, s in samples]
    return {"bytes": samples[0][0], "mb_per_s": [round(x, 1) for x in mbs],
            "median_mb_per_s": round(statistics.median(mbs), 1), "best_mb_per_s": round(max(mbs), 1)}


def throughput(svc: LocalService, job_id: str, shard_dir: Path, manifest: Manifest, repeats: int, streams: int) -> dict:
    names = [s.name for s in manifest.shards]
    paths = [shard_dir / x for x in names]
    for p in paths:  # warm-up: the page cache holds every file for both sides
        disk_read(p)
    asyncio.run(http_pass(svc, job_id, names, 1))
    out: dict = {"files": len(names), "file_bytes": manifest.shards[0].bytes, "chunk_bytes": CHUNK,
                 "repeats": repeats, "parallel_streams": streams}
    for label, k in (("single_stream", 1), (f"parallel_{streams}", streams)):
        disk, http, srv, cli = [], [], 0.0, 0.0
        for _ in range(repeats):  # interleaved, so drifting machine load hits both sides alike
            disk.append(disk_pass(paths, k))
            s0, c0 = cpu_s(svc.proc.pid), time.process_time()
            http.append(asyncio.run(http_pass(svc, job_id, names, k)))
            srv, cli = srv + cpu_s(svc.proc.pid) - s0, cli + time.process_time() - c0
        gb = sum(n for n, _ in http) / 1e9
        d, h = rates(disk), rates(http)
        h["server_cpu_s_per_gb"] = round(srv / gb, 3)
        h["client_cpu_s_per_gb"] = round(cli / gb, 3)
        out[label] = {"disk": d, "http": h,
                      "http_over_disk": round(h["median_mb_per_s"] / d["median_mb_per_s"], 3)}
    curl = [c for c in (curl_pass(svc, job_id, names) for _ in range(repeats)) if c]
    if curl:
        c = rates(curl)
        out["single_stream"]["curl"] = c
        out["single_stream"]["curl_over_disk"] = round(c["median_mb_per_s"] / out["single_stream"]["disk"]
                                                       ["median_mb_per_s"], 3)
    cold = cold_cache(svc, job_id, names, paths, repeats)
    if cold:
        out["single_stream_cold_cache"] = cold
    out["integrity"] = integrity(svc, job_id, shard_dir, manifest)
    return out


def drop_caches() -> bool:
    """Empty the page cache (root only), so that a read comes from the disk itself."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cold_cache(svc: LocalService, job_id: str, names: list[str], paths: list[Path], repeats: int) -> dict | None:
    """Single stream with the page cache dropped before each pass: the file really comes from the
    disk, for the reader and for the service alike. None where the cache cannot be dropped."""
    if not drop_caches():
        return None
    disk, http = [], []
    for _ in range(repeats):
        drop_caches()
        disk.append(disk_pass(paths, 1))
        drop_caches()
        http.append(asyncio.run(http_pass(svc, job_id, names, 1)))
    d, h = rates(disk), rates(http)
    return {"disk": d, "http": h, "http_over_disk": round(h["median_mb_per_s"] / d["median_mb_per_s"], 3)}


def integrity(svc: LocalService, job_id: str, shard_dir: Path, manifest: Manifest) -> dict:
    """One full download checked against the manifest's sha256, and one ranged request (the
    second half of a file) checked against the file's bytes."""
    s = manifest.shards[0]
    with client(svc) as c:
        full = c.get(f"/v1/jobs/{job_id}/shards/{s.name}")
        half = s.bytes // 2
        t = time.perf_counter()
        r = c.get(f"/v1/jobs/{job_id}/shards/{s.name}", headers={"Range": f"bytes={half}-"})
        ranged_s = time.perf_counter() - t
        cached = c.get(f"/v1/jobs/{job_id}/shards/{s.name}", headers={"If-None-Match": full.headers.get("etag", "")})
    with open(shard_dir / s.name, "rb") as f:
        f.seek(half)
        want = hashlib.sha256(f.read()).hexdigest()
    return {"full": {"status": full.status_code, "sha256_matches_manifest": hashlib.sha256(full.content).hexdigest()
                     == s.sha256, "etag": full.headers.get("etag")},
            "range_second_half": {"status": r.status_code, "content_range": r.headers.get("content-range"),
                                  "bytes": len(r.content), "expected_bytes": s.bytes - half,
                                  "matches_file": hashlib.sha256(r.content).hexdigest() == want,
                                  "mb_per_s": round(len(r.content) / ranged_s / MB, 1)},
            "if_none_match_status": cached.status_code}


# ------------------------------------------------------------------ main


def versions() -> dict:
    out = {}
    for pkg in ("fastapi", "uvicorn", "starlette", "httpx", "h11", "anyio", "pydantic", "sqlalchemy",
                "uvloop", "httptools"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def table(res: dict) -> str:
    lines = [f"{'route':<22}{'conc':>5}{'n':>6}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}"
             f"{'srv cpu ms':>11}  status"]
    for route, levels in res["latency"].items():
        for conc, s in levels.items():
            lines.append(f"{route:<22}{conc:>5}{s['requests']:>6}{s['req_per_s']:>8}{s['p50_ms']:>9}{s['p99_ms']:>9}"
                         f"{s['mean_ms']:>9}{s['server_cpu_ms_per_req']:>11}  {s['status']}")
    t = res["shards"]
    lines.append("")
    lines.append(f"shards: {t['files']} x {t['file_bytes'] / 2**20:.0f} MiB, median MB/s of {t['repeats']}")
    for label in ("single_stream", f"parallel_{t['parallel_streams']}", "single_stream_cold_cache"):
        if label not in t:
            continue
        x = t[label]
        extra = f"  curl {x['curl']['median_mb_per_s']} ({x['curl_over_disk']})" if "curl" in x else ""
        lines.append(f"  {label:<14} disk {x['disk']['median_mb_per_s']:>8}  http {x['http']['median_mb_per_s']:>7}"
                     f"  http/disk {x['http_over_disk']}{extra}")
    rg = t["integrity"]["range_second_half"]
    lines.append(f"  range: HTTP {rg['status']} {rg['content_range']} matches={rg['matches_file']}; full sha256 ok="
                 f"{t['integrity']['full']['sha256_matches_manifest']}; If-None-Match -> "
                 f"{t['integrity']['if_none_match_status']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about a minute: fewer requests, smaller shards")
    ap.add_argument("--levels", default="1,8,32", help="concurrency levels")
    ap.add_argument("--requests", type=int, help="requests per level and route (default 1000; --quick 150)")
    ap.add_argument("--cap-s", type=float, help="time cap per level (default 45 s; --quick 8 s)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shard-mib", type=int, help="MiB per shard (default 64; --quick 16)")
    ap.add_argument("--repeats", type=int, help="throughput passes per mode (default 3; --quick 2)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_load.json"))
    args = ap.parse_args()
    n = args.requests or (150 if args.quick else 1000)
    cap = args.cap_s or (8.0 if args.quick else 45.0)
    mib = args.shard_mib or (16 if args.quick else 64)
    repeats = args.repeats or (2 if args.quick else 3)
    levels = [int(x) for x in args.levels.split(",")]
    if n > 1000:
        ap.error("--requests: at most 1000 (the service caps SYNTH2_MAX_JOBS_PER_KEY at 1000)")
    warmup = 20

    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="synth2-bench-serve-"))
    data = tmp / "data"
    data.mkdir()
    post_keys = {c: f"bench-key-post-c{c}-0123456789" for c in levels}
    env = {"SYNTH2_API_KEYS": ",".join([MAIN_KEY, *post_keys.values()]), "SYNTH2_MAX_RUNNING": "1",
           "SYNTH2_MAX_JOBS_PER_KEY": "1000", "SYNTH2_POLL_SECONDS": "0.5", "SYNTH2_JOB_EXECUTOR": "inline",
           "SYNTH2_MODEL_ROOTS": WORLD}
    res: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "versions": versions()},
        "settings": {"quick": args.quick, "levels": levels, "requests_per_level": n, "warmup_requests": warmup,
                     "time_cap_s_per_level": cap, "service_env": {k: v for k, v in env.items()
                                                                  if k != "SYNTH2_API_KEYS"},
                     "api_keys": 1 + len(post_keys), "server": "synth2 serve (uvicorn, 1 worker)",
                     "client": "asyncio in the bench process; one httpx.AsyncClient (one keep-alive connection) per worker"},
    }
    blocker = subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL)
    svc = LocalService(data, env_extra=env | {"SYNTH2_DATA_ROOTS": str(tmp)})
    try:
        t = time.perf_counter()
        shard_dir = data / "jobs" / "bench-shards"
        manifest = write_shards(shard_dir, args.shards, mib)
        blocker_id, shard_job = seed_store(f"sqlite:///{data / 'synth2.db'}", data, shard_dir, blocker)
        res["setup_s"] = round(time.perf_counter() - t, 1)
        svc.start()
        with client(svc) as c:
            b, s = c.get(f"/v1/jobs/{blocker_id}").json(), c.get(f"/v1/jobs/{shard_job}").json()
            if b["status"] != "RUNNING" or s["status"] != "SUCCEEDED":
                raise RuntimeError(f"unexpected start state: blocker {b['status']}, shard job {s['status']}")

        res["latency"] = {}
        route = "GET /v1/jobs/{id}"
        res["latency"][route] = {}
        for conc in levels:
            res["latency"][route][str(conc)] = asyncio.run(run_level(svc, get_sender(shard_job), n, conc, cap, warmup))
            print(f"{route} c={conc}: {res['latency'][route][str(conc)]}", flush=True)
        seeds = Seeds()
        route = "POST /v1/jobs"
        res["latency"][route] = {}
        for conc in levels:
            send = post_sender(seeds, post_keys[conc], n, max(warmup, conc))
            res["latency"][route][str(conc)] = asyncio.run(run_level(svc, send, n, conc, cap, warmup))
            print(f"{route} c={conc}: {res['latency'][route][str(conc)]}", flush=True)

        with client(svc) as c:  # nothing but the blocker may have started
            running = c.get("/v1/jobs", params={"status": "RUNNING", "limit": 1000}).json()["jobs"]
            pending = c.get("/v1/jobs", params={"status": "PENDING", "limit": 1000}).json()["jobs"]
            failed = c.get("/v1/jobs", params={"status": "FAILED", "limit": 1000}).json()["jobs"]
        res["jobs_after_posts"] = {"running": [j["id"] for j in running], "blocker": blocker_id,
                                   "pending_listed_max_1000": len(pending), "failed": len(failed)}
        if [j["id"] for j in running] != [blocker_id] or failed:
            raise RuntimeError(f"a submitted job started: {res['jobs_after_posts']}")

        res["shards"] = throughput(svc, shard_job, shard_dir, manifest, repeats, min(4, args.shards))
        res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        res["seconds"] = round(time.time() - started, 1)
        res["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
        print(table(res))
        print(f"wrote {args.out} ({res['seconds']} s)")
    finally:
        svc.stop()
        blocker.kill()
        blocker.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
