"""README's HTTP API section, run as written: its curl calls against a live `flowledger serve`
give what README shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import serve_process

ROOT = os.path.join(os.path.dirname(__file__), "..")
README = open(os.path.join(ROOT, "README.md")).read()
SECTION = README.split("## The HTTP API", 1)[1].split("\n## ", 1)[0]


def _blocks():
    """(commands, shown output) for each command block followed by an output block."""
    blocks = re.findall(r"```\n(.*?)\n```", SECTION, re.S)
    return [(blocks[i], blocks[i + 1]) for i in range(len(blocks) - 1) if blocks[i].startswith("curl ")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_the_curl_calls_work_as_shown(tmp_path):
    env = {**os.environ, "FLOWLEDGER_STORE": str(tmp_path / "api.db")}
    exe = [sys.executable, "-c", "from flowledger.cli import main; main()"]
    subprocess.run([*exe, "append", os.path.join(ROOT, "examples", "welcome-series.jsonl")], env=env, check=True, capture_output=True)
    env["KEY"] = subprocess.run(
        [*exe, "keys", "create", "--name", "walkthrough", "--scope", "admin"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    with serve_process(env) as port:
        pairs = _blocks()
        assert len(pairs) == 3
        for commands, shown in pairs:
            script = commands.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("\n", "; echo; ") + "; echo"
            out = subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True, text=True).stdout
            assert [line for line in out.splitlines() if line] == shown.splitlines()
