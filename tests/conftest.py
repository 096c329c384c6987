import os

import pytest

# No test reaches a model hub; the same loading code runs on models the tests build.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every Ray a test starts (in process, or `ray start --head`) stays on loopback: without this Ray
# replaces 127.0.0.1 by the machine's routable address and listens on every interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A world built at the tiny size once per test session (about 15 s on 2 cores)."""
    import torch

    from generators.world.build import build_world

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("world")
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
    import signal
    from pathlib import Path

    needle = marker.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, PermissionError):
            continue
