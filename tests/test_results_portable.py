"""Committed results name no path of the machine that made them (ground rule: paths relative to the repository).

The shared before-stop check looks for a quoted absolute path only; a spec's "local-dir:/work/..." and a report's
"create_model_and_transforms('local-dir:/tmp/...')" slipped past it into bench/results once. This scans every
result and doc for an absolute path under the usual roots, after any character that cannot be part of a name.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(?:^|[^A-Za-z0-9_.~<>$-])(/(?:work|tmp|home|root|Users|mnt|srv)/[^\s\"')]*)")
SUFFIXES = {".json", ".md", ".csv", ".txt", ".yaml", ".yml"}


def _leaks(text: str) -> list[str]:
    """Absolute paths under the usual roots, and this checkout's own path wherever it lives."""
    found = ABSOLUTE.findall(text)
    return found + ([str(ROOT)] if str(ROOT) in text and not any(str(ROOT) in f for f in found) else [])


def test_the_scanner_finds_the_leaks_it_was_written_for():
    assert _leaks('{"name": "local-dir:/work/main/world/clip"}') == ["/work/main/world/clip"]
    assert _leaks("create_model_and_transforms('local-dir:/tmp/wq-time3/clip')") == ["/tmp/wq-time3/clip"]
    assert _leaks('{"out": "/home/me/runs/x"}') == ["/home/me/runs/x"]
    assert _leaks('"data": "<world>/data/train", "tmp": "$TMPDIR/run-1", "url": "https://x.org/tmp/a"') == []


def test_committed_results_and_docs_name_no_absolute_path():
    leaks = {}
    for top in ("bench/results", "docs"):
        for p in sorted((ROOT / top).rglob("*")):
            if p.suffix in SUFFIXES and p.is_file():
                found = _leaks(p.read_text(errors="replace"))
                if found:
                    leaks[p.relative_to(ROOT).as_posix()] = found[:3]
    assert not leaks, f"absolute paths in committed results (make them relative to the repository): {leaks}"


def test_the_ablation_results_name_no_path_of_this_machine():
    """bench/diversity_ablation.py's JSON: a repository path becomes relative after a quote or a colon (the spec's
    encoder "local-dir:<path>" once leaked /work/... into a committed result), scratch space becomes $TMPDIR."""
    from bench.diversity_ablation import portable_json

    res = {"world": str(ROOT / "world"), "encoder": {"name": f"local-dir:{ROOT / 'world' / 'clip'}"},
           "scratch": f"{tempfile.gettempdir()}/run-1", "note": "text about world/clip stays"}
    back = json.loads(portable_json(res))
    assert back == {"world": "world", "encoder": {"name": "local-dir:world/clip"}, "scratch": "$TMPDIR/run-1",
                    "note": "text about world/clip stays"}
