import re

import pytest
from click.testing import CliRunner

from synth2 import __version__
from synth2.cli import main


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


@pytest.mark.parametrize("path", [()] + list(_commands(main)), ids=lambda p: " ".join(p) or "synth2")
def test_every_command_has_help(path):
    r = CliRunner().invoke(main, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert re.search(r"Usage: .*", r.output)
    assert len(r.output.splitlines()) > 3


def test_world_show_on_a_missing_world_says_what_to_do(tmp_path):
    r = CliRunner().invoke(main, ["world", "show", str(tmp_path)])
    assert r.exit_code != 0 and "synth2 world build" in r.output
