"""The per-job report: metrics in stats.json, report.json and a self-contained report.html, the
report of a plain shard set, `synth2 report` (with --compare, --json, errors), and the page as
headless Chromium renders it. One tiny job is shared by the whole module."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.metrics import METRIC_DOCS
from synth2.cli import main
from tests.conftest import CHROMIUM, world_spec

PLOTS = ("plot-concepts", "plot-projection", "plot-alignment")


@pytest.fixture(scope="module")
def job(tiny_world, tmp_path_factory):
    from pipeline.run import run_spec

    world, _ = tiny_world
    out = tmp_path_factory.mktemp("report") / "job"
    stats = run_spec(world_spec(world, out), local=True)
    return out, stats


@pytest.fixture(scope="module")
def shards_only(job, tmp_path_factory):
    """The job's shards and manifest alone, as `synth2 pull` leaves them."""
    out, _ = job
    d = tmp_path_factory.mktemp("pulled") / "shards"
    d.mkdir()
    for p in [*out.glob("*.tar"), out / "manifest.json"]:
        shutil.copy(p, d / p.name)
    return d


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict]]:
    p = _Tags()
    p.feed(text)
    return p.tags


def _png(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,"), src[:60]
    return base64.b64decode(src.split(",", 1)[1])


def assert_self_contained(text: str) -> None:
    """No resource outside the file: every src/href is a data: URI or an in-page anchor, no script."""
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "url(" not in text and "@import" not in text
    for tag, attrs in _tags(text):
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for a in ("src", "href"):
            if a in attrs:
                assert attrs[a].startswith(("data:", "#")), (tag, attrs[a][:60])


def assert_report_page(text: str, plots=PLOTS) -> None:
    tags = _tags(text)
    imgs = {a.get("id"): a for t, a in tags if t == "img"}
    for plot in plots:
        assert plot in imgs, plot
        assert imgs[plot]["alt"], plot
        png = _png(imgs[plot]["src"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, (plot, len(png))
    assert any(t == "table" and a.get("id") == "metrics" for t, a in tags)
    assert_self_contained(text)


# ---------------------------------------------------------------- the job's report


def test_job_writes_metrics_and_a_report(job):
    out, stats = job
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(stats["metrics"]))
    for s in ("generated", "selected"):
        m = on_disk["metrics"][s]
        assert set(METRIC_DOCS) - {"prior_alignment_mean"} <= set(m), s
        assert 1.0 <= m["vendi"] <= m["n"] and 0 <= m["concept_gini"] <= 1
    assert on_disk["metrics"]["generated"]["n"] == stats["valid"]
    assert on_disk["metrics"]["selected"]["n"] == stats["samples"]
    assert -1 <= on_disk["metrics"]["selected"]["prior_alignment_mean"] <= 1
    assert on_disk["metrics"]["selected"]["prior_alignment_mean"] == pytest.approx(stats["prior_alignment_mean"], abs=1e-4)

    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "job" and report["spec_hash"] == stats["spec_hash"]
    assert report["metrics"] == on_disk["metrics"]
    bank = report["spec"]["concepts"]["items"]
    assert set(report["concept_counts"]["before_balance"]) == set(report["concept_counts"]["after_balance"]) == set(bank)
    assert sum(report["concept_counts"]["after_balance"].values()) >= stats["samples"] > 0
    p = report["projection"]
    assert p["points"] == p["of"] == stats["samples"] == len(p["x"]) == len(p["y"]) == len(p["concept"])
    assert len(report["alignment"]["values"]) == stats["samples"]
    assert report["samples"] and all(1 <= len(v) <= 5 for v in report["samples"].values())

    text = (out / "report.html").read_text()
    assert_report_page(text)
    assert report["title"] in text or json.dumps(report["title"])[1:-1] in text
    assert f"PCA of caption text embeddings, {stats['samples']} of {stats['samples']} points" in \
        next(a["alt"] for t, a in _tags(text) if a.get("id") == "plot-projection")
    for key in METRIC_DOCS:
        assert key in text
    assert "<details" in text and "per_concept" in text  # the spec, as YAML


def test_report_of_the_jobs_shards_as_a_plain_shard_set(job, shards_only):
    from pipeline.report import collect, collect_shards
    from pipeline.report_html import render

    out, stats = job
    for data in (collect_shards(out), collect(shards_only)):  # the job dir read as shards; a pulled copy
        assert data["kind"] == "shards" and list(data["metrics"]) == ["selected"]
        m = data["metrics"]["selected"]
        assert m["n"] == stats["samples"] and data["stats"]["samples"] == stats["samples"]
        assert list(data["concept_counts"]) == ["after_balance"]
        # the encoder named in the manifest's spec re-encodes the captions: the same figures as the job's
        job_m = stats["metrics"]["selected"]
        assert m["vendi"] == pytest.approx(job_m["vendi"], rel=1e-2)
        for k in ("distinct_1", "distinct_2", "distinct_3", "coverage", "concept_entropy", "concept_gini",
                  "exact_duplicate_rate", "prior_alignment_mean"):
            assert m[k] == pytest.approx(job_m[k], abs=1e-4), k
        assert_report_page(render(data))


def test_render_is_fast_and_escapes_everything(job):
    from pipeline.report_html import render, render_compare

    out, _ = job
    data = json.loads((out / "report.json").read_text())
    data["title"] = "<script>alert(1)</script>"
    data["samples"] = {"<b>red</b> & star": ["<img src=x onerror=alert(1)>", "a \x07 bell"]}
    data["concept_counts"]["before_balance"]["$x$ <i>"] = 3  # matplotlib mathtext and HTML in a concept
    t = time.perf_counter()
    text = render(data)
    assert time.perf_counter() - t < 3.0
    assert "<script>" not in text and "<img src=x" not in text and "<b>red</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;b&gt;red&lt;/b&gt; &amp; star" in text
    assert "\x07" not in text
    assert_report_page(text)
    cmp = render_compare(data, data)
    assert_self_contained(cmp)
    assert "<script>" not in cmp


# ---------------------------------------------------------------- synth2 report


def _run(args, cwd: Path):
    r = CliRunner()
    with r.isolated_filesystem(temp_dir=cwd):
        res = r.invoke(main, args)
        made = {p.name: p.read_text() for p in Path(".").iterdir() if p.is_file()}
    return res, made


def test_cli_report_on_a_job_dir_writes_into_it(job, tmp_path):
    out, stats = job
    (out / "report.html").unlink()
    res, made = _run(["report", str(out)], tmp_path)
    assert res.exit_code == 0, res.output
    assert (out / "report.html").exists() and (out / "report.json").exists() and not made
    assert f"wrote {out / 'report.html'}, {out / 'report.json'}" in res.stdout
    lines = res.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["metric", "generated", "selected"])
    rows = {line.split()[0]: line.split() for line in lines[head + 1:]}
    assert set(rows) == set(METRIC_DOCS)
    assert rows["n"][-2:] == [str(stats["valid"]), str(stats["samples"])]
    assert_report_page((out / "report.html").read_text())


def test_cli_report_on_a_read_only_job_dir_or_with_out_writes_elsewhere(job, tmp_path, monkeypatch):
    out, _ = job
    before = (out / "report.html").stat().st_mtime_ns
    monkeypatch.setattr("synth2.cli_report._writable_dir", lambda path: False)
    res, made = _run(["report", str(out)], tmp_path)
    assert res.exit_code == 0, res.output
    assert set(made) == {"report.html"} and "wrote report.html" in res.stdout
    assert_report_page(made["report.html"])
    monkeypatch.undo()
    res, made = _run(["report", str(out), "--out", "sub/mine.html"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "wrote sub/mine.html" in res.stdout and not made
    assert (out / "report.html").stat().st_mtime_ns == before


def test_cli_report_on_a_shard_set(shards_only, tmp_path):
    res, made = _run(["report", str(shards_only)], tmp_path)
    assert res.exit_code == 0, res.output
    assert set(made) == {"report.html"} and not (shards_only / "report.html").exists()
    assert re.search(r"metric +selected", res.stdout) and re.search(r"vendi ↑ +\d", res.stdout)
    text = made["report.html"]
    assert_report_page(text)
    assert "Shard set report" in text


def test_cli_report_json(job, tmp_path):
    out, stats = job
    res, _ = _run(["report", str(out), "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert set(metrics) == {"generated", "selected"} and metrics["selected"]["n"] == stats["samples"]
    assert "wrote" in res.stderr


def test_cli_report_compare(job, shards_only, tmp_path):
    out, stats = job
    res, made = _run(["report", str(out), "--compare", str(shards_only)], tmp_path)
    assert res.exit_code == 0, res.output
    assert set(made) == {"compare.html"} and "wrote compare.html" in res.stdout
    assert re.search(r"metric +A +B +Δ \(B − A\) +B is", res.stdout)
    assert re.search(r"^ +n +(\d+) +\1 +0$", res.stdout, re.M)
    text = made["compare.html"]
    assert_report_page(text, plots=("plot-concepts-a", "plot-concepts-b", "plot-alignment"))
    report = json.loads((out / "report.json").read_text())
    assert report["title"] in text and f"t ({shards_only.name})" in text
    res, made = _run(["report", str(out), "--compare", str(shards_only), "--out", "c.html", "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    both = json.loads(res.stdout)
    assert both["a"]["metrics"]["selected"]["n"] == both["b"]["metrics"]["selected"]["n"] == stats["samples"]
    assert set(made) == {"c.html"}


def test_cli_report_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, says in ([str(tmp_path / "nope")], "no such file or directory"), \
                      ([str(tmp_path / "empty")], "not a shard directory"), \
                      ([str(tmp_path / "empty"), "--compare", str(tmp_path / "nope")], "not a shard directory"):
        res, made = _run(["report", *args], tmp_path)
        assert res.exit_code == 1, res.output
        assert res.stderr.startswith("error: ") and says in res.stderr and "Traceback" not in res.output
        assert not made


# ---------------------------------------------------------------- in a browser


def _chromium(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{name}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1280,2400", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})


def _page_problems(stderr: str) -> list[str]:
    """What Chromium reports about the page: console messages (script errors), failed loads."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Failed to load" in line or "net::ERR_" in line or "Not allowed to load" in line]


@pytest.mark.skipif(not CHROMIUM, reason="no headless Chromium on PATH or at $SYNTH2_CHROMIUM")
def test_report_in_headless_chromium(job, tmp_path):
    from PIL import Image, ImageStat

    out, _ = job
    url = (out / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    r = _chromium(tmp_path, "shot", f"--screenshot={shot}", url)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not _page_problems(r.stderr)
    d = _chromium(tmp_path, "dom", "--dump-dom", url)
    assert d.returncode == 0, d.stderr[-2000:]
    assert not _page_problems(d.stderr)

    dom = d.stdout
    imgs = {a.get("id"): a for t, a in _tags(dom) if t == "img"}
    for plot in PLOTS:
        png = _png(imgs[plot]["src"])
        assert len(png) > 5000
        w, h = Image.open(io.BytesIO(png)).size
        assert w > 300 and h > 200, plot
    assert 'id="metrics"' in dom and "<script" not in dom

    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    stat = ImageStat.Stat(img.convert("L"))
    assert stat.stddev[0] > 20  # not one flat colour
    assert len(img.getcolors(maxcolors=1 << 20) or []) > 500  # text and plots, not a blank page
