"""`ReadsFrom`: the marker a params field carries when its value names something the run will read.

    from typing import Annotated
    from contracts.reads import ReadsFrom

    class Params(ConsumerParams):
        model: Annotated[str, ReadsFrom("model")] = Field(min_length=1, max_length=500)
        data: list[Annotated[str, ReadsFrom("data", weighted=True)]] = Field(min_length=1)   # "dir@0.3"
        test: Annotated[str | None, ReadsFrom("data")] = None

A marked value is a local path, a `file://` or other fsspec URL, or a hub id. `synth2 run` on one's own
machine reads whatever it names; the service (serve/policy.py) checks every marked value of a submitted
run against its deployment's model and data roots and refuses the rest with 422, so a consumer only has
to mark its fields. Pydantic only: no heavy imports here.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

Kind = Literal["model", "data"]
_WEIGHT = re.compile(r"@([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


@dataclass(frozen=True)
class ReadsFrom:
    """The field's value names a `kind` ("model" or "data") the run reads. `weighted`: a trailing
    `@WEIGHT` (as in vlm's `dir@0.3`) is not part of the location."""

    kind: Kind
    weighted: bool = False

    def location(self, value: str) -> str:
        return _WEIGHT.sub("", value) if self.weighted else value


def _markers(annotation: Any) -> Iterator[ReadsFrom]:
    """Every ReadsFrom inside an annotation (Annotated metadata, also nested in list[...] / X | None)."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        yield from (m for m in meta if isinstance(m, ReadsFrom))
        yield from _markers(base)
        return
    for arg in typing.get_args(annotation):
        yield from _markers(arg)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}.{i}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")


def reads(params: BaseModel, prefix: str = "") -> Iterator[tuple[str, Kind, str]]:
    """(field path, kind, location) for every marked value of a params instance, nested models included."""
    for name, info in type(params).model_fields.items():
        value = getattr(params, name)
        path = f"{prefix}{name}"
        found = [m for m in info.metadata if isinstance(m, ReadsFrom)] + list(_markers(info.annotation))
        for marker in dict.fromkeys(found):
            for p, s in _strings(value, path):
                yield p, marker.kind, marker.location(s)
        if isinstance(value, BaseModel):
            yield from reads(value, f"{path}.")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, BaseModel):
                    yield from reads(v, f"{path}.{i}.")
