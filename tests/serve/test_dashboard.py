"""The dashboard at `/`, in a real headless Chromium, against a real service running a real job.

Chromium loads the page with the key in the URL fragment, lets it poll the API for a few seconds
of virtual time, and gives back the DOM it built (`--dump-dom`), a screenshot and its console.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHROMIUM
from tests.serve.conftest import KEY, job_body, wait_for

pytestmark = pytest.mark.skipif(not CHROMIUM, reason="no Chromium on PATH or at $SYNTH2_CHROMIUM "
                                "(Debian: apt-get install chromium; CI installs it)")


# ---------------------------------------------------------------- a small DOM from --dump-dom


@dataclass
class Node:
    tag: str
    attrs: dict
    children: list = field(default_factory=list)
    parent: Node | None = None

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs) -> list[Node]:
        """Elements by tag and attributes; `class_` matches one class among the element's classes."""
        out = []
        for n in self.iter():
            if tag and n.tag != tag:
                continue
            ok = True
            for k, v in attrs.items():
                if k == "class_":
                    ok = ok and v in (n.attrs.get("class") or "").split()
                else:
                    ok = ok and n.attrs.get(k.replace("_", "-")) == v
            if ok:
                out.append(n)
        return out

    def find(self, tag: str | None = None, **attrs) -> Node | None:
        found = self.find_all(tag, **attrs)
        return found[0] if found else None

    def by_id(self, id_: str) -> Node | None:
        return self.find(id=id_)

    @property
    def hidden(self) -> bool:
        """Hidden by its own `hidden` attribute or an ancestor's."""
        n = self
        while n is not None:
            if "hidden" in n.attrs:
                return True
            n = n.parent
        return False


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, parent=self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, {k: (v if v is not None else "") for k, v in attrs}, parent=self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse_dom(html: str) -> Node:
    b = _TreeBuilder()
    b.feed(html)
    b.close()
    return b.root


# ---------------------------------------------------------------- Chromium


@dataclass
class Page:
    dom: Node
    screenshot: Path
    console: list[str]

    def row(self, job_id: str) -> Node | None:
        jobs = self.dom.by_id("jobs")
        return jobs.find("tr", data_job_id=job_id) if jobs else None


def load(url: str, out: Path, name: str, budget_ms: int = 4000) -> Page:
    """Open `url` in a fresh headless Chromium; return its DOM, a 1280x800 screenshot and its console lines."""
    png = out / f"{name}.png"
    with tempfile.TemporaryDirectory(prefix="chromium-", dir=out) as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,800",
               f"--virtual-time-budget={budget_ms}", "--enable-logging=stderr", "--v=0",
               f"--screenshot={png}", "--dump-dom", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    (out / f"{name}.html").write_text(proc.stdout)
    (out / f"{name}.stderr.txt").write_text(proc.stderr)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    assert "<html" in proc.stdout, f"chromium dumped no DOM: {proc.stderr[-2000:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return Page(parse_dom(proc.stdout), png, console)


def assert_no_js_errors(page: Page) -> None:
    uncaught = [line for line in page.console if "Uncaught" in line]
    assert not uncaught, "the page logged errors:\n" + "\n".join(uncaught)


def assert_screenshot(png: Path) -> None:
    from PIL import Image

    assert png.exists(), "chromium wrote no screenshot"
    assert png.stat().st_size > 20_000, f"the screenshot is suspiciously small ({png.stat().st_size} bytes)"
    with Image.open(png) as im:
        assert im.size == (1280, 800)
        colours = im.convert("RGB").resize((320, 200)).getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) one flat colour"


def progress_of(row: Node) -> int:
    bars = row.find_all(role="progressbar")
    assert bars, "the job row has no progress bar"
    value = int(bars[0].attrs["aria-valuenow"])
    assert 0 <= value <= 100
    return value


# ---------------------------------------------------------------- the test


def test_dashboard_shows_a_live_job(service, tiny_world, tmp_path):
    world, _ = tiny_world
    service.start()
    out = tmp_path / "browser"
    out.mkdir()

    # The page itself needs no key and holds no data.
    page = httpx.get(f"{service.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" in page.text
    assert "http://" not in page.text and "https://" not in page.text, "the page must be self-contained (works offline)"

    with service.client() as client:
        r = client.post("/v1/jobs", json=job_body(world))
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]

        # A wrong key: the page says so, and shows no job.
        bad = load(f"{service.url}/#key=not-a-valid-key", out, "bad-key", budget_ms=2000)
        banner = bad.dom.by_id("auth-error")
        assert banner is not None and not banner.hidden
        assert "invalid or missing api key" in banner.text.lower()
        assert bad.row(job_id) is None
        assert_no_js_errors(bad)

        # While it runs (once its stages report), the row shows RUNNING and a progress bar.
        deadline = time.time() + 120
        while time.time() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] not in ("PENDING", "RUNNING") or job["progress"]:
                break
            time.sleep(0.3)
        live = load(f"{service.url}/#key={KEY}", out, "running")
        row = live.row(job_id)
        assert row is not None, f"no row for job {job_id} in the page"
        status = row.find(class_="status")
        assert status is not None and status.text.strip() in ("RUNNING", "SUCCEEDED"), status and status.text
        assert status.attrs["data-status"] == status.text.strip()
        value = progress_of(row)
        if status.text.strip() == "RUNNING":
            assert value < 100
            assert row.find_all(class_="stage"), "no per-stage breakdown for a running job"
            assert not row.find("button", data_action="cancel").hidden, "a running job must offer Cancel"
        assert_no_js_errors(live)

        # Once it has succeeded: 100 %, and `#job=ID` opens its shards (as links) and its log.
        job = wait_for(client, job_id, ("SUCCEEDED", "FAILED", "STOPPED"), timeout=240)
        assert job["status"] == "SUCCEEDED", job
        names = [s["name"] for s in client.get(f"/v1/jobs/{job_id}/manifest").json()["shards"]]

    done = load(f"{service.url}/#key={KEY}&job={job_id}", out, "dashboard")
    row = done.row(job_id)
    assert row is not None
    assert row.find(class_="status").text.strip() == "SUCCEEDED"
    assert progress_of(row) == 100
    assert row.find("button", data_action="cancel").hidden, "a finished job offers no Cancel"
    stages = {s.attrs["data-stage"]: s for s in row.find_all(class_="stage")}
    assert list(stages) == ["caption", "score", "select", "synthesize", "shard"]
    assert all(s.attrs["data-state"] == "SUCCEEDED" for s in stages.values())
    details = done.dom.find("tr", data_details_for=job_id)
    assert details is not None, "#job=ID did not open the job's shards"
    links = details.find_all("a", class_="shard-link")
    assert [a.text for a in links] == names
    assert all(a.attrs["href"] == f"/v1/jobs/{job_id}/shards/{n}" for a, n in zip(links, names))
    logs = done.dom.by_id("logs")
    assert logs is not None and not logs.hidden and logs.attrs.get("data-job-id") == job_id
    assert logs.text.strip() not in ("", "loading\u2026", "(no log lines yet)"), "the log panel shows no log"
    assert done.dom.by_id("auth-error").hidden
    assert_no_js_errors(done)
    assert_screenshot(done.screenshot)


def test_api_docs_render_offline_under_the_pages_policy(service, tmp_path):
    """/docs in a real Chromium: Swagger UI comes from the service itself and renders every route, and the
    page's CSP (no inline script, frame-ancestors 'none') refuses nothing it needs."""
    service.start()
    out = tmp_path / "browser"
    out.mkdir()
    page = load(f"{service.url}/docs", out, "docs", budget_ms=4000)
    ops = page.dom.find_all(class_="opblock")
    paths = {n.attrs.get("data-path") for n in page.dom.iter() if "opblock-summary-path" in (n.attrs.get("class") or "")}
    assert len(ops) >= 15, f"Swagger UI rendered {len(ops)} operations"
    assert "/v1/jobs" in paths and "/v1/jobs/{job_id}/shards/{name}" in paths
    stderr = (out / "docs.stderr.txt").read_text()
    assert "Content Security Policy" not in stderr and "Refused to" not in stderr, stderr[-2000:]
    assert_no_js_errors(page)
