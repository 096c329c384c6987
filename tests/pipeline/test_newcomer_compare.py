"""Issue #17 point 6: `report --compare` measures both sides at the same size, with the same k."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORDS = "red blue green small large circle square star triangle above below left of right".split()


def _shards(directory: Path, n: int, seed: int) -> Path:
    from contracts.shards import ShardWriter, make_sample, sample_key

    rng = np.random.default_rng(seed)
    w = ShardWriter(directory, "s", 16)
    for i in range(n):
        text = " ".join(rng.choice(WORDS, 5))
        w.write(make_sample(sample_key(str(seed), i), text, rng.normal(size=4), {"source": "synthetic",
                                                                                "concepts": [text.split()[0]]}))
    w.close()
    return directory


def test_compare_samples_the_larger_set_down(tiny_world, tmp_path):
    from pipeline.report import compare

    world, _ = tiny_world
    enc = f"local-dir:{world / 'clip'}"
    a, b = _shards(tmp_path / "a", 60, 0), _shards(tmp_path / "b", 300, 1)
    ra, rb = compare(a, b, enc)
    full_b = rb["metrics_full"]["selected"]
    sa, sb = ra["metrics"]["selected"], rb["metrics"]["selected"]
    assert sa["n"] == sb["n"] == 60 and full_b["n"] == 300
    assert sa["cluster_k"] == sb["cluster_k"] == 3 and full_b["cluster_k"] == 15  # same k on both sides
    assert "metrics_full" not in ra
    assert ra["comparison"]["selected"] == {"n": 60, "cluster_k": 3, "seed": 0, "subsampled": "B", "from": 300}
    assert sb["distinct_2"] != full_b["distinct_2"]  # the sample is measured, not the full set relabelled
    again = compare(a, b, enc)[1]["metrics"]["selected"]
    assert again["distinct_2"] == sb["distinct_2"] and again["vendi"] == sb["vendi"]  # seeded


@pytest.mark.slow  # a subprocess that imports torch and open_clip: ~40 s on the loaded 2 shared cores
def test_compare_cli_says_what_it_sampled(tiny_world, tmp_path):
    world, _ = tiny_world
    a, b = _shards(tmp_path / "a", 200, 0), _shards(tmp_path / "b", 40, 1)
    r = subprocess.run([sys.executable, "-m", "synth2.cli", "report", str(a), "--compare", str(b), "--encoder",
                        f"local-dir:{world / 'clip'}", "--out", str(tmp_path / "c.html")], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    line = ("selected: A's 200 captions sampled down to 40 (seed 0), the other side's count, so both are measured "
            "at the same size; cluster entropy with k = 2 on both")
    assert line in r.stdout
    assert "sampled down to 40" in (tmp_path / "c.html").read_text()
