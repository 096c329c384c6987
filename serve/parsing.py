"""Request bodies as JSON or YAML, bounded: a body never costs more than its size says.

YAML is first read as an event stream by libyaml (no objects built) and refused past a number of nodes,
aliases or a nesting depth; only then is it loaded. Both formats are then walked once, counting every
node as often as it is reachable, so an alias bomb (or a self-referencing alias) stops at the node limit
instead of growing in validation or in an error message. Runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from serve.errors import Refused
from serve.settings import Settings

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _too_much(what: str, limit: int, env: str) -> Refused:
    return Refused(422, [f"(body): {what} over this service's limit of {limit} ({env})"])


def _scan_yaml(raw: bytes, s: Settings) -> None:
    depth = nodes = aliases = 0
    for ev in yaml.parse(raw, Loader=_Loader):
        if isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > s.max_yaml_aliases:
                raise _too_much("YAML aliases", s.max_yaml_aliases, "SYNTH2_MAX_YAML_ALIASES")
        elif isinstance(ev, _OPEN):
            depth, nodes = depth + 1, nodes + 1
            if depth > s.max_depth:
                raise _too_much("nesting depth", s.max_depth, "SYNTH2_MAX_DEPTH")
        elif isinstance(ev, _CLOSE):
            depth -= 1
        elif isinstance(ev, yaml.ScalarEvent):
            nodes += 1
        if nodes > s.max_yaml_nodes:
            raise _too_much("YAML nodes", s.max_yaml_nodes, "SYNTH2_MAX_YAML_NODES; send large specs as JSON")


def _walk(data: Any, s: Settings, max_nodes: int) -> None:
    """Depth and node count of the value as validation will see it (aliases expanded, cycles endless)."""
    stack, nodes = [(data, 1)], 0
    while stack:
        x, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise _too_much("nodes (aliases expanded)", max_nodes, "SYNTH2_MAX_YAML_NODES")
        if isinstance(x, (dict, list)):
            if depth > s.max_depth:
                raise _too_much("nesting depth", s.max_depth, "SYNTH2_MAX_DEPTH")
            items = list(x.keys()) + list(x.values()) if isinstance(x, dict) else x
            stack.extend((v, depth + 1) for v in items)


def parse_body(raw: bytes, content_type: str | None, s: Settings) -> Any:
    """The body as data; Refused(422) when it is not valid, too deep, or too large once expanded. A body
    without a JSON or YAML Content-Type (none, or curl's default form type) is JSON if it parses as JSON,
    else YAML."""
    ct = (content_type or "").split(";")[0].strip().lower()
    is_yaml, kind = "yaml" in ct, "YAML" if "yaml" in ct else "JSON"
    if not is_yaml and "json" not in ct:  # no declared type: sniff (JSON is also YAML, but parses faster)
        try:
            json.loads(raw or b"null")
        except RecursionError:  # JSON, too deep: refused below
            pass
        except ValueError:
            is_yaml, kind = True, "JSON or YAML"
    try:
        if is_yaml:
            _scan_yaml(raw, s)
            data = yaml.load(raw, Loader=_Loader)  # noqa: S506 -- a safe loader (CSafeLoader / SafeLoader)
        else:
            data = json.loads(raw or b"null")
    except RecursionError:
        raise _too_much("nesting depth", s.max_depth, "SYNTH2_MAX_DEPTH") from None
    except (ValueError, yaml.YAMLError) as e:
        raise Refused(422, [f"(body): not valid {kind}: {str(e).splitlines()[0][:200]}"]) from None
    _walk(data, s, max_nodes=s.max_yaml_nodes if is_yaml else 4 * s.max_body_bytes)
    return data
