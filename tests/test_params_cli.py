"""synth2/params_cli.py: CLI options generated from a consumer's pydantic params (one definition)."""

from typing import Literal

import click
from click.testing import CliRunner
from pydantic import Field

from contracts.registry import ConsumerParams
from synth2.params_cli import params_command


class _Params(ConsumerParams):
    steps: int = Field(100, ge=1, le=1000, description="Training steps.")
    kind: Literal["a", "b"] = "a"
    nodes: list[int] = Field([4, 8], min_length=1)
    flag: bool = False
    lr: float | None = None


@click.group()
def _group() -> None:
    pass


@click.option("--out", required=True)
@params_command(_group, "train", _Params)
def _train(params: _Params, out: str) -> None:
    click.echo(params.model_dump_json() + " " + out)


def test_options_parse_into_the_model():
    r = CliRunner().invoke(_group, ["train", "--out", "x", "--steps", "5", "--nodes", "1,2", "--flag", "--kind", "b"])
    assert r.exit_code == 0, r.output
    assert '"steps":5' in r.output and '"nodes":[1,2]' in r.output and '"flag":true' in r.output and r.output.endswith(" x\n")


def test_defaults_come_from_the_model():
    r = CliRunner().invoke(_group, ["train", "--out", "y"])
    assert r.exit_code == 0, r.output
    assert '"steps":100' in r.output and '"kind":"a"' in r.output and '"lr":null' in r.output


def test_bounds_are_the_models_and_name_the_option():
    r = CliRunner().invoke(_group, ["train", "--out", "x", "--steps", "5000"])
    assert r.exit_code == 2
    assert "--steps" in r.output and "less than or equal to 1000" in r.output and "5000" in r.output
    r = CliRunner().invoke(_group, ["train", "--out", "x", "--nodes", "1,zz"])
    assert r.exit_code == 2 and "--nodes" in r.output


def test_help_lists_every_field_with_its_default():
    r = CliRunner().invoke(_group, ["train", "--help"])
    for opt in ("--steps", "--kind [a|b]", "--nodes", "--flag / --no-flag", "--lr", "--out"):
        assert opt in r.output
    assert "Training steps. [default: 100]" in r.output
