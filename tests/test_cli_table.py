"""The CLI is a table from subcommand to module; every entry and every config field must reach code."""
import dataclasses
import re
from pathlib import Path

import pytest
from conftest import run_cli

from revtune.cli import COMMANDS, build_parser
from revtune.config import FLAT, PARTS, RunConfig
from revtune.selection.registry import option_flags

SOURCE = Path(__file__).resolve().parents[1] / "src" / "revtune"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_arguments_and_run(name, capsys):
    module = COMMANDS[name]
    assert module.HELP and callable(module.add_arguments) and callable(module.run)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0 and module.HELP.split()[0] in capsys.readouterr().out


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_every_config_field_is_read_somewhere():
    """A flag that reaches no code is a bug: each field of each part and of each strategy's options must be
    read (`x.field` or "field") outside the modules that declare them."""
    declaring = ("config.py", "options.py", "knobs.py", "registry.py")
    code = "\n".join(p.read_text() for p in SOURCE.rglob("*.py") if p.name not in declaring)
    fields = [f for _, f in FLAT.values()] + [f for users in option_flags().values() for _, f in users]
    fields += [f for part in dataclasses.fields(RunConfig) for f in dataclasses.fields(PARTS[part.name])]
    unread = sorted({f.name for f in fields if not re.search(rf"\.{f.name}\b|['\"]{f.name}['\"]", code)})
    assert unread == []
