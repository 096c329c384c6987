"""report.html: placeholder until the renderer lands (being written now)."""

import html
import json


def render(data: dict) -> str:
    return f"<!doctype html><meta charset=utf-8><title>{html.escape(data['title'])}</title><pre>{html.escape(json.dumps(data['metrics'], indent=1))}</pre>"
