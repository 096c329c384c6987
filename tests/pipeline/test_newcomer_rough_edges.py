"""Issue #17 point 9: a resumed job's rates, YAML bodies without a Content-Type, CLRS scores as fractions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from contracts.storage import Store

ROOT = Path(__file__).resolve().parents[2]


def test_resumed_stage_rate_counts_only_this_runs_work(tmp_path, monkeypatch):
    import pipeline.job as job

    clock = [1000.0]
    monkeypatch.setattr(job.time, "time", lambda: clock[0])
    p = job.Progress(Store(tmp_path), "j")
    p.update("caption", done=900, total=1000, status="RUNNING")  # 900 were done by an earlier run
    clock[0] += 10
    p.update("caption", done=950)
    assert p.stages["caption"]["rate_per_s"] == 5.0  # 50 in 10 s, not 950 in 10 s
    clock[0] += 10
    p.update("caption", done=1000, status="SUCCEEDED")
    assert p.stages["caption"]["rate_per_s"] == 5.0
    q = job.Progress(Store(tmp_path / "b"), "j")  # a stage wholly done before: no rate at all
    q.update("select", done=1000, total=1000, status="SUCCEEDED")
    clock[0] += 10
    q.update("select", done=1000, status="SUCCEEDED")
    assert "rate_per_s" not in q.stages["select"]


def _settings(tmp_path):
    from serve.settings import Settings

    return Settings(data_dir=tmp_path, api_keys="k", model_roots=[str(tmp_path)])


def test_yaml_body_without_content_type(tmp_path):
    from serve.errors import Refused
    from serve.parsing import parse_body

    s = _settings(tmp_path)
    spec = {"version": 1, "name": "x", "output": {"dir": "out"}}
    body = yaml.safe_dump(spec).encode()
    for ct in (None, "", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"):  # curl --data-binary
        assert parse_body(body, ct, s) == spec
    assert parse_body(b'{"a": 1}', None, s) == {"a": 1}
    with pytest.raises(Refused) as e:
        parse_body(b"{not json", None, s)
    assert e.value.status == 422 and "not valid JSON or YAML" in str(e.value.detail)
    with pytest.raises(Refused, match="nesting depth"):  # too deep for Python's parser: refused, not a 500
        parse_body(b"[" * 100_000 + b"]" * 100_000, None, s)


def test_yaml_post_without_content_type_reaches_spec_validation(tmp_path):
    from fastapi.testclient import TestClient

    from serve.app import create_app

    spec = yaml.safe_load((ROOT / "configs/demo.yaml").read_text()) | {"surprise": 1}  # refused before any job starts
    with TestClient(create_app(_settings(tmp_path)), raise_server_exceptions=False) as c:
        r = c.post("/v1/jobs", headers={"Authorization": "Bearer k", "content-type": ""},
                   content=yaml.safe_dump(spec).encode())
    assert r.status_code == 422, r.text
    assert any(d.startswith("surprise: Extra inputs are not permitted") for d in r.json()["detail"]), r.text


def test_clrs_cli_prints_fractions_like_the_consumer_summary():
    from consumers.clrs.job import summary
    from synth2.cli_clrs import format_scores

    res = {"algorithm": "bfs", "processor": "mpnn", "test_micro_f1": 0.8125, "steps": 10, "test_nodes": [64],
           "test": {"trajectories": 32, "per_feature": {"pi": {"score": 0.75, "type": "pointer", "metric": "accuracy"}}}}
    text = format_scores(summary(res) | {"micro_f1": res["test_micro_f1"]}, res["test"]["per_feature"], "test")
    assert "micro-F1 0.8125" in text and "0.7500" in text and "%" not in text
    assert summary(res)["test_micro_f1"] == 0.8125 and summary(res)["per_feature"]["pi"] == 0.75


def test_progress_lines_for_the_console(tmp_path, monkeypatch, caplog):
    import logging

    import pipeline.job as job

    clock = [1000.0]
    monkeypatch.setattr(job.time, "time", lambda: clock[0])
    p = job.Progress(Store(tmp_path), "j")
    with caplog.at_level(logging.INFO, logger="pipeline.job"):
        p.update("caption", done=900, total=1000, status="RUNNING")
        clock[0] += 1
        p.update("caption", done=910)  # within LOG_EVERY_S of the last line: quiet
        clock[0] += job.LOG_EVERY_S
        p.update("caption", done=980)
        p.update("caption", done=1000, status="SUCCEEDED")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["caption    RUNNING   900/1000 (90%), 900 from an earlier run",
                     "caption    RUNNING   980/1000 (98%), 5/s, 900 from an earlier run",
                     "caption    SUCCEEDED 1000/1000 (100%), 6.25/s, 900 from an earlier run"]
    assert "logged_at" not in (tmp_path / "progress.json").read_text()
    # a finished stage records how long this run spent in it (what bench/pipeline_throughput.py reads per phase)
    assert json.loads((tmp_path / "progress.json").read_text())["stages"]["caption"]["seconds"] == 1 + job.LOG_EVERY_S
