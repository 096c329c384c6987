import os

import pytest

# No test reaches a model hub; the same loading code runs on models the tests build.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
