"""Every ``crystalflow`` command in the README's shell blocks parses with the real parser, and the
files it reads exist (the commands that run work live in their own tests; this catches a renamed
or removed flag, a wrong sub-command or a path that does not exist)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from crystalflow.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    out = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("crystalflow ") or " -m crystalflow " in line:
                out.append(line)
    return out


def test_readme_has_commands():
    cmds = readme_commands()
    assert len(cmds) >= 20
    assert any(c.startswith("crystalflow predict --composition SrTiO3") for c in cmds)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses_and_its_inputs_exist(command):
    argv = shlex.split(command)
    argv = argv[argv.index("crystalflow") + 1:] if "crystalflow" in argv else argv
    if argv[:1] == ["-m"]:
        argv = argv[2:]
    if "--help" in argv:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 0
        return
    args = build_parser().parse_args(argv)  # SystemExit on a bad flag or sub-command
    assert callable(getattr(args, "func", None))
    for name in ("from_csv", "reference", "data_dir"):
        value = getattr(args, name, None)
        if value and str(value).startswith("../shared"):
            assert (REPO / value).exists(), value
    if getattr(args, "init_from", None):
        assert (REPO / "crystalflow" / "checkpoints" / args.init_from).is_file()
