"""Scale-out: placement and resource checks (on CPU), requests rebuilt from their index, workers
writing shards, byte-identical output on --local, one Ray node and two, a local Ray on loopback."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contracts.shards import Manifest, sha256_file
from pipeline.executors import LocalExecutor, ResourceError, Step, check_resources
from pipeline.prompts import RequestPlan, build_requests, derive_seed, format_prompt
from pipeline.spec import parse_spec
from pipeline.stages import torch_device, torch_dtype
from tests.conftest import world_spec

ROOT = Path(__file__).resolve().parents[2]


def _step(stage, cpus=1.0, gpus=0.0, n=1):
    return Step(stage, object, {}, cpus, gpus, n)


def test_resource_check_names_the_stage_and_the_resource():
    two_cpu = [{"CPU": 2.0, "memory": 1e9}]
    check_resources([[_step("caption", 0.75, n=2), _step("score", 0.5)], [_step("synthesize", 1, n=2)]], two_cpu)
    with pytest.raises(ResourceError, match=r"resources\.synthesize\.num_gpus is 1 per actor.*no node.*GPU"):
        check_resources([[_step("synthesize", 1, 1)]], two_cpu)
    with pytest.raises(ResourceError, match=r"resources\.caption\.num_cpus is 4 per actor.*most on one node: 2"):
        check_resources([[_step("caption", 4)]], [{"CPU": 2.0}, {"CPU": 2.0}])
    with pytest.raises(ResourceError, match=r"resources\.caption \(2 x 1\), resources\.score \(1 x 1\) together "
                                            r"need 3 CPU"):
        check_resources([[_step("caption", 1, n=2), _step("score", 1)]], two_cpu)
    # two nodes of one GPU each hold two one-GPU actors, not one two-GPU actor
    gpus = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    check_resources([[_step("caption", 1, 1, n=2)]], gpus)
    with pytest.raises(ResourceError, match="num_gpus is 2 per actor"):
        check_resources([[_step("caption", 1, 2)]], gpus)


def test_device_and_dtype_choice():
    assert torch_device(0, "caption", cuda_available=False) == "cpu"
    assert torch_device(1, "caption", cuda_available=True) == "cuda"
    assert torch_device(0.5, "synthesize", cuda_available=True) == "cuda"
    with pytest.raises(RuntimeError, match=r"resources\.synthesize\.num_gpus is 1 but this worker sees no CUDA"):
        torch_device(1, "synthesize", cuda_available=False)
    import torch

    assert torch_dtype("bfloat16", "cpu", "captions.dtype") == torch.bfloat16
    assert torch_dtype("float16", "cuda", "synthesis.dtype") == torch.float16
    with pytest.raises(ValueError, match="synthesis.dtype float16 needs a GPU stage"):
        torch_dtype("float16", "cpu", "synthesis.dtype")


def test_local_executor_refuses_gpus_it_does_not_have():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # the refusal is for machines without one
    with pytest.raises(ResourceError, match=r"resources\.caption\.num_gpus is 1"):
        list(LocalExecutor().run([{"chunk": 0}], [_step("caption", 1, 1)]))


def _old_build_requests(spec):
    """build_requests as it was before RequestPlan (one list for the whole job)."""
    from pipeline.prompts import Request, concept_counts

    c, cap = spec.concepts, spec.captions
    seed, counts = cap.sampling.seed, concept_counts(spec)
    out = []
    for i, first in enumerate([k for k in c.items for _ in range(counts[k])]):
        rng = np.random.default_rng(derive_seed("request", seed, i))
        names = [first]
        if c.per_prompt > 1:
            others = [k for k in c.items if k != first]
            names += [others[j] for j in rng.choice(len(others), size=min(c.per_prompt - 1, len(others)),
                                                    replace=False)]
        shots = ""
        for j in (rng.choice(len(cap.few_shot), size=cap.shots_per_prompt, replace=False)
                  if cap.shots_per_prompt else []):
            ex = cap.few_shot[int(j)]
            shots += format_prompt(cap.prompt, tuple(ex.concepts)) + " " + ex.caption + "\n"
        out.append(Request(i, tuple(names), shots + format_prompt(cap.prompt, tuple(names)),
                           derive_seed("caption", seed, i)))
    return out


def test_request_i_depends_only_on_the_spec_and_i(tmp_path):
    d = {"version": 1, "name": "r", "concepts": {"items": ["a", "b c", "d", "e"], "per_prompt": 2,
                                                  "weights": {"a": 3.0, "b c": 1.0, "d": 0.5, "e": 0.01}},
         "captions": {"model": "m", "per_concept": 7, "shots_per_prompt": 1,
                      "few_shot": [{"concepts": ["a"], "caption": "an a"}, {"concepts": ["d"], "caption": "a d"}]},
         "synthesis": {"prior": "p", "encoder": {"name": "e"}}, "output": {"dir": str(tmp_path)}}
    spec = parse_spec(d)
    plan = RequestPlan(spec)
    assert len(plan) == 28
    assert build_requests(spec) == _old_build_requests(spec)
    assert [plan[i] for i in (27, 3, 0)] == [_old_build_requests(spec)[i] for i in (27, 3, 0)]
    with pytest.raises(IndexError):
        plan[28]
    # the concepts alone, as selection and synthesis read them, without building the prompts
    assert plan.concepts([27, 3, 0, 3]) == [plan[i].concepts for i in (27, 3, 0, 3)]
    one = RequestPlan(parse_spec({**d, "concepts": {**d["concepts"], "per_prompt": 1}}))
    assert one.concepts(range(28)) == [one[i].concepts for i in range(28)]
    with pytest.raises(IndexError):
        plan.concepts([0, 28])


def _shas(directory):
    m = Manifest.load(directory)
    assert m is not None and m.complete
    for s in m.shards:
        assert sha256_file(Path(directory) / s.name) == s.sha256
    return [(s.name, s.samples, s.sha256) for s in m.shards]


def test_ray_refuses_an_unsatisfiable_spec_fast(tiny_world, tmp_path, ray_local):
    from pipeline.runner import RayExecutor, run_job

    world, _ = tiny_world
    spec = world_spec(world, tmp_path / "job", **{"resources.synthesize": {"num_cpus": 1, "num_gpus": 1}})
    with pytest.raises(ResourceError, match=r"resources\.synthesize\.num_gpus is 1 per actor"):
        run_job(spec, executor=RayExecutor())
    assert not list((tmp_path / "job" / "stages").glob("captions-*"))
    progress = json.loads((tmp_path / "job" / "progress.json").read_text())
    assert progress["status"] == "FAILED" and "resources.synthesize" in progress["error"]


LOOPBACK_DRIVER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import ray  # imported before init_ray, as a user's script or another library may do
from pipeline.run import init_ray
print(init_ray(num_cpus=1), flush=True)
ray.get(ray.remote(lambda: 1).remote())  # a worker is up
print("ready", flush=True)
sys.stdin.readline()
"""


def test_local_ray_listens_on_loopback_only():
    """A local Ray that `init_ray` starts, in a process whose environment lacks the test suite's
    loopback switch (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER), with Ray imported first: every server
    it starts listens on loopback only (checked with `ss`)."""
    import psutil

    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    proc = subprocess.Popen([sys.executable, "-c", LOOPBACK_DRIVER, str(ROOT)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline().strip() == "local"
        assert proc.stdout.readline().strip() == "ready"
        ours = {proc.pid} | {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    finally:
        proc.communicate("\n", timeout=120)
    listeners = [(line.split()[3], names) for line in out.splitlines()
                 if {int(p) for p in re.findall(r"pid=(\d+)", line)} & ours
                 for names in [re.findall(r'\("([^"]+)"', line)]]
    assert any("gcs_server" in n or "raylet" in n for _, n in listeners), listeners  # ss sees Ray's servers
    wild = [(a, n) for a, n in listeners
            if not re.match(r"^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):\d+$", a)]
    assert not wild, f"Ray servers listening beyond loopback: {wild}"


TWO_NODES = r'''
import json, os, sys
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, sys.argv[1])
import ray
from ray.cluster_utils import Cluster
from pipeline.runner import RayExecutor, run_job
from pipeline.spec import parse_spec

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                       "include_dashboard": False})
cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
ray.init(address=cluster.address)
cluster.wait_for_nodes()
nodes = [n for n in ray.nodes() if n["Alive"]]
spec = parse_spec(json.loads(sys.argv[2]))
stats = run_job(spec, executor=RayExecutor())
print(json.dumps({"nodes": len(nodes), "samples": stats["samples"]}))
ray.shutdown()
cluster.shutdown()
'''


@pytest.mark.slow  # about 60 s on 2 idle cores (300 s when busy); the default suite compares Ray and --local bytes
def test_local_one_ray_node_and_two_ray_nodes_write_identical_bytes(tiny_world, tmp_path, ray_local):
    from pipeline.runner import RayExecutor, run_job

    world, _ = tiny_world
    over = {"captions.per_concept": 8, "synthesis.batch_size": 4, "output.shard_size": 6,
            "resources": {"caption": {"num_cpus": 0.5, "concurrency": 2}, "score": {"num_cpus": 0.5},
                          "synthesize": {"num_cpus": 0.5, "concurrency": 2}}}
    os.environ["SYNTH2_CHUNK_TARGET"] = "16"  # several chunks, so that workers share the job
    try:
        local = run_job(world_spec(world, tmp_path / "local", **over), executor=LocalExecutor())
        one = run_job(world_spec(world, tmp_path / "one", **over), executor=RayExecutor())
        spec = world_spec(world, tmp_path / "two", **over)
        # the local loop, one node (a small job: selected by one Ray task), two nodes (the distributed selection)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SYNTH2_SELECT_ONE_TASK_MAX_ROWS": "0"}
        r = subprocess.run([sys.executable, "-c", TWO_NODES, str(ROOT), json.dumps(spec.model_dump(mode="json"))],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        del os.environ["SYNTH2_CHUNK_TARGET"]
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    two = json.loads(r.stdout.strip().splitlines()[-1])
    assert two["nodes"] == 2
    assert local["samples"] == one["samples"] == two["samples"] > 6
    assert json.loads((tmp_path / "local" / "job.json").read_text())["layout"]["chunk_rows"] == 16
    assert len(list((tmp_path / "one" / "stages").glob("captions-*.npz"))) == 3
    assert _shas(tmp_path / "local") == _shas(tmp_path / "one") == _shas(tmp_path / "two")


def _phase_reached(out: Path, phase: str) -> bool:
    try:
        stages = json.loads((out / "progress.json").read_text())["stages"]
    except (OSError, ValueError, KeyError):
        return False
    if phase == "caption":
        return len(list((out / "stages").glob("captions-*.npz"))) >= 1
    if phase == "synthesize":
        m = Manifest.load(out)
        return m is not None and len(m.shards) >= 1
    return stages.get(phase, {}).get("status") == "RUNNING"


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["caption", "select", "synthesize"])
def test_killed_ray_driver_resumes_in_each_phase(tiny_world, tmp_path, phase):
    import secrets
    import signal
    import time

    import yaml

    from pipeline.runner import run_job
    from tests.conftest import kill_marked_processes

    world, _ = tiny_world
    over = {"captions.per_concept": 16, "synthesis.batch_size": 4, "output.shard_size": 4}
    spec = world_spec(world, tmp_path / "job", **over)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    marker = secrets.token_hex(6)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SYNTH2_CHUNK_TARGET": "16", "SYNTH2_KILL_TEST": marker}
    env.pop("RAY_ADDRESS", None)
    run = [sys.executable, str(ROOT / "pipeline" / "run.py"), "--spec", str(spec_file)]
    proc = subprocess.Popen(run, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and not _phase_reached(tmp_path / "job", phase):
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before the kill: " + proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kill_marked_processes(f"SYNTH2_KILL_TEST={marker}")  # its local Ray goes with it, as when a node dies
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    kill_marked_processes(f"SYNTH2_KILL_TEST={marker}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    os.environ["SYNTH2_CHUNK_TARGET"] = "16"
    try:
        run_job(world_spec(world, tmp_path / "clean", **over), executor=LocalExecutor())
    finally:
        del os.environ["SYNTH2_CHUNK_TARGET"]
    assert _shas(tmp_path / "job") == _shas(tmp_path / "clean")
    assert {t.name for t in (tmp_path / "job").glob("*.tar")} == {s.name for s in Manifest.load(tmp_path / "job").shards}


class _Interrupted(LocalExecutor):
    """The local loop, interrupted (as by Ctrl-C or the service's cancel) after `after` items."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def run(self, items, steps):
        for k, row in enumerate(super().run(items, steps)):
            if k == self.after:
                raise KeyboardInterrupt("stopped on request")
            yield row


def test_every_kind_records_how_it_ended_and_resumes_to_the_same_bytes(tmp_path):
    """The one skeleton: a clrs job stopped mid-way says STOPPED, keeps its listed shards, and the
    re-run (workers writing only the shards the manifest lacks) matches an uninterrupted run."""
    from pipeline.runner import run_job

    def spec(out):
        return parse_spec({"version": 1, "name": "k", "kind": "clrs", "output": {"dir": str(out), "shard_size": 3},
                           "clrs": {"algorithms": ["insertion_sort", "bfs"], "train": {"count": 5, "nodes": [5]},
                                    "val": {"count": 1, "nodes": [5]}, "test": {"count": 1, "nodes": [6]}}})

    with pytest.raises(KeyboardInterrupt):
        run_job(spec(tmp_path / "job"), executor=_Interrupted(after=2))
    progress = json.loads((tmp_path / "job" / "progress.json").read_text())
    assert progress["status"] == "STOPPED" and progress["stages"]["sample"]["status"] == "STOPPED"
    partial = Manifest.load(tmp_path / "job")
    assert partial is not None and not partial.complete and len(partial.shards) == 2
    stats = run_job(spec(tmp_path / "job"), executor=LocalExecutor())
    assert stats["resumed_from"] == 6 and stats["samples"] == 14
    run_job(spec(tmp_path / "clean"), executor=LocalExecutor())
    assert _shas(tmp_path / "job") == _shas(tmp_path / "clean")
    assert json.loads((tmp_path / "job" / "progress.json").read_text())["status"] == "SUCCEEDED"


def test_store_decodes_only_the_arrays_asked_for(tmp_path):
    from contracts.storage import Store

    st = Store(str(tmp_path))
    st.save_npz("c.npz", drop=np.array(["", "x"]), text_emb=np.ones((2, 3), np.float16))
    assert set(st.load_npz("c.npz")) == {"drop", "text_emb"}
    got = st.load_npz("c.npz", keys=("drop",))
    assert list(got) == ["drop"] and got["drop"].tolist() == ["", "x"]
