"""Every `edgecls` command the README shows parses against the real CLI: its command, options and arguments exist."""

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from edgecls.cli import app

README = Path(__file__).parents[1] / "README.md"


def readme_commands() -> list[str]:
    """`edgecls …` (or `-m edgecls …`) lines of the README's code blocks and inline code, continuations joined."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S) + re.findall(r"    (bash tools/setup\.sh.*)", text)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for start, word in enumerate(words):
                if word == "edgecls" and (start == 0 or words[start - 1] in ("&&", "-m") or "=" in words[start - 1]):
                    rest = words[start + 1 :]
                    lines.append(shlex.join(rest[: rest.index("&&")] if "&&" in rest else rest))
    inline = re.findall(r"`edgecls ((?:--?[a-z]+ )*[a-z-]+ [^`]*)`", text)
    return lines + [line for line in inline if "…" not in line and "NAME" not in line and "DIR" not in line]


def test_the_readme_shows_commands():
    assert len(readme_commands()) > 30


@pytest.mark.parametrize("line", readme_commands())
def test_each_readme_command_parses(line):
    group = typer.main.get_command(app)
    words = shlex.split(line)
    own = {opt for param in group.params for opt in param.opts}  # options of `edgecls` itself, before the command
    while words[0].startswith("-"):
        assert words.pop(0) in own, f"`edgecls {line}`: no such option of edgecls itself"
    name, *args = words
    assert name in group.commands, f"README shows `edgecls {name}`, which does not exist"
    try:
        group.commands[name].make_context(name, args)  # parses and converts every option and argument; runs nothing
    except Exception as exc:  # noqa: BLE001 (typer's vendored click raises its own UsageError)
        pytest.fail(f"`edgecls {line}`: {getattr(exc, 'format_message', exc.__str__)()}")
