"""The service's routers, one module per resource; `errors(...)` documents the error answers a route gives."""

from __future__ import annotations

from serve.models import Problem

_WHY = {401: "no valid API key", 403: "not this key's job", 404: "no such job, run, consumer or file",
        409: "in a state that does not allow it", 413: "request body too large",
        422: "invalid: one `field: rule (got value)` line per problem", 429: "this key has too many active jobs"}


def errors(*codes: int) -> dict:
    return {c: {"model": Problem, "description": _WHY[c]} for c in codes}


TEXT = {200: {"description": "the log as text", "content": {"text/plain": {"schema": {"type": "string"}}}}}
