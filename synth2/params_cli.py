"""Click options generated from a pydantic params model, so a consumer's settings are defined once.

A consumer's `Params` (a `ConsumerParams` subclass) drives its HTTP schema, its job spec section and —
through `params_command` — its CLI options; the command receives one validated `Params` object, and
bounds are checked by the model alone, so the CLI and the service cannot disagree:

    @params_command(htm, "train", HTMParams)
    def htm_train(params: HTMParams, out: str) -> None:
        ...

Every field becomes `--field-name` (underscores as dashes); booleans become `--x/--no-x`; `Literal`s a
choice; lists a comma-separated value. Options left out keep the model's default. Extra click options
(an output directory, say) may be stacked above the decorator as usual.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

import click
from pydantic import BaseModel, ValidationError


def _strip_optional(ann: Any) -> Any:
    if get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _scalar(ann: Any) -> click.ParamType | None:
    ann = _strip_optional(ann)
    if get_origin(ann) is Literal:
        return click.Choice([str(a) for a in get_args(ann)])
    return {int: click.INT, float: click.FLOAT, str: click.STRING}.get(ann)


def _convert_list(raw: str, item: click.ParamType, opt: str) -> list:
    out = []
    for part in (p.strip() for p in raw.split(",")):
        if part:
            try:
                out.append(item.convert(part, None, None))
            except click.BadParameter as e:
                raise click.BadParameter(f"{part!r}: {e.message}", param_hint=opt) from None
    return out


def _option(name: str, field) -> tuple[click.Option, Callable[[Any], Any]]:
    """One click option for FIELD and the function turning its raw value into the model's input."""
    ann = _strip_optional(field.annotation)
    opt = "--" + name.replace("_", "-")
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    shown = "required" if field.is_required() else f"default: {default!r}" if default is not None else "default: none"
    help_ = f"{field.description or name.replace('_', ' ')} [{shown}]"
    if ann is bool:
        return click.Option([f"{opt}/--no-{opt[2:]}"], default=None, help=help_), lambda v: v
    if get_origin(ann) in (list, tuple, set):
        item = _scalar(get_args(ann)[0] if get_args(ann) else str) or click.STRING
        return (click.Option([opt], type=click.STRING, default=None, help=help_ + " (comma-separated)"),
                lambda v: _convert_list(v, item, opt))
    kind = _scalar(ann)
    if kind is None:  # nested models, dicts: JSON on the command line
        import json

        def parse_json(v: str) -> Any:
            try:
                return json.loads(v)
            except json.JSONDecodeError as e:
                raise click.BadParameter(f"not valid JSON: {e}", param_hint=opt) from None

        return click.Option([opt], type=click.STRING, default=None, help=help_ + " (JSON)"), parse_json
    return click.Option([opt], type=kind, default=None, help=help_), lambda v: v


def params_options(model: type[BaseModel]) -> Callable[[Callable], Callable]:
    """Decorate a click command function so that it takes MODEL's fields as options and receives `params`."""

    def decorate(fn: Callable) -> click.Command | Callable:
        converters: dict[str, Callable[[Any], Any]] = {}
        opts = []
        for name, field in model.model_fields.items():
            option, conv = _option(name, field)
            converters[option.name] = (name, conv)
            opts.append(option)

        def wrapper(**kwargs: Any) -> Any:
            values = {}
            for key in list(kwargs):
                if key in converters:
                    raw = kwargs.pop(key)
                    if raw is not None:
                        field, conv = converters[key]
                        values[field] = conv(raw)
            try:
                params = model.model_validate(values)
            except ValidationError as e:
                lines = []
                for err in e.errors():
                    loc = ".".join(str(p) for p in err["loc"])
                    opt = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "params"
                    lines.append(f"{opt}: {err['msg']} (got {err.get('input')!r})" if loc else err["msg"])
                raise click.UsageError("; ".join(lines)) from None
            return fn(params=params, **kwargs)

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        wrapper.__click_params__ = list(getattr(fn, "__click_params__", [])) + opts[::-1]
        return wrapper

    return decorate


def params_command(group: click.Group, name: str, model: type[BaseModel], **command_kwargs: Any) -> Callable:
    """`@params_command(group, "train", Params)`: a command of GROUP whose options are MODEL's fields."""

    def decorate(fn: Callable) -> click.Command:
        return group.command(name, **command_kwargs)(params_options(model)(fn))

    return decorate


def set_torch_threads(n: int | None) -> None:
    """A command's `--threads N`: torch's intra-op threads (unset: torch's default, one per core)."""
    if n:
        import torch

        torch.set_num_threads(n)
