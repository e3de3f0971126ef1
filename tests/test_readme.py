"""README's runnable blocks, run as written (issue 14.11).

The marker: an HTML comment on the line right before a fenced block,

    <!-- runnable -->            the block runs in every test run
    <!-- runnable slow -->       the block runs too, and its test is marked slow

Markdown renderers hide the comment, so readers see the block unchanged. Blocks fenced
as ```bash (or sh) run with `bash -euo pipefail`; ```python blocks run as a script. Any
other block, or one without the marker, is not run.

Each block runs on its own, against a private redis-server the tests start (flushed
before each block: a block must be self-contained), in a scratch directory where the
repository's examples/ and Procfiles are linked, with:

    PIANO_REDIS_URL   the private Redis (so `piano-dist redis url` prints it)
    PIANO_HOME        a directory inside the scratch directory
    PYTHONPATH        the scratch directory (workers import examples.* from it)

Background jobs a bash block starts are killed when it ends. `pip install …` lines are not run (CI installed the project with its test extra
before the tests), but every extra they name must exist in pyproject.toml. A block
passes when it exits 0 and prints no Python traceback.

test_every_command_is_run_by_the_readme checks that each `piano-dist` command appears in
some runnable block, apart from the few listed there with the test that covers them.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = re.compile(r"^<!--\s*runnable(?P<flags>(?:\s+[a-z-]+)*)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
PIP_INSTALL = re.compile(r"\bpip install\b[^&;|\n]*")
RUNNERS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}


def runnable_blocks(text: str) -> list[dict]:
    """Each marked fenced block: its line number, language, flags and code."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i].strip())
        if marker:
            fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            if not fence:
                raise AssertionError(f"README.md:{i + 1}: the runnable marker must be followed by a fenced block")
            lang = fence.group("lang").lower()
            if lang not in RUNNERS:
                raise AssertionError(f"README.md:{i + 2}: a runnable block must be bash or python, not {lang!r}")
            end = i + 2
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            blocks.append({"line": i + 2, "lang": RUNNERS[lang], "flags": set(marker.group("flags").split()),
                           "code": "\n".join(lines[i + 2:end]) + "\n"})
            i = end
        i += 1
    return blocks


def _extras() -> set[str]:
    text = (REPO / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, re.MULTILINE))


def without_pip_installs(code: str, where: str) -> str:
    """Check what each `pip install` would install, and leave it out."""
    extras = _extras()
    for command in PIP_INSTALL.findall(code):
        for group in re.findall(r"\.\[([^\]]*)\]", command):
            for extra in group.split(","):
                assert extra.strip() in extras, f"{where}: `{command.strip()}` names a missing extra {extra!r}"
        assert re.search(r"-e\s+['\"]?\.", command), f"{where}: install from the repository (`pip install -e .`)"
    return PIP_INSTALL.sub("true", code)


BLOCKS = runnable_blocks(README.read_text())


def _param(block: dict):
    marks = [pytest.mark.slow] if "slow" in block["flags"] else []
    return pytest.param(block, id=f"README.md:{block['line']}", marks=marks)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    for name in ("examples", "Procfile", "Procfile.dashboard", "pyproject.toml"):
        if (REPO / name).exists():
            (root / name).symlink_to(REPO / name)
    return root


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_readme_block_runs(block, scratch, redis_url):
    where = f"README.md:{block['line']}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RQ_REDIS_URL")}
    env.update(PIANO_REDIS_URL=redis_url, PIANO_HOME=str(scratch / ".piano"), PYTHONPATH=str(scratch))
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    if block["lang"] == "bash":
        script = scratch / f"block_{block['line']}.sh"
        # Whatever the block left running in the background ends with it, pass or fail.
        script.write_text("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
                          + without_pip_installs(block["code"], where))
        argv = ["bash", "-euo", "pipefail", str(script)]
    else:
        script = scratch / f"block_{block['line']}.py"
        script.write_text(block["code"])
        argv = [sys.executable, str(script)]
    result = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    output = f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{where} exited {result.returncode}\n{output}"
    assert "Traceback (most recent call last)" not in result.stdout + result.stderr, f"{where}\n{output}"


# Commands no runnable block runs, and the tests that run them instead.
COVERED_ELSEWHERE = {
    "bench": "tests/test_bench_smoke.py (a full run takes minutes)",
    "dashboard": "tests/test_dashboard.py, tests/test_dashboard_browser.py (a server)",
}


def test_every_command_is_run_by_the_readme():
    from piano_dist.cli.main import main

    code = "\n".join(b["code"] for b in BLOCKS)
    used = set(re.findall(r"\bpiano-dist\s+(?:(?:--?[a-z-]+(?:\s+\S+)?)\s+)*([a-z][a-z-]*)", code))
    missing = sorted(set(main.commands) - used - set(COVERED_ELSEWHERE))
    assert not missing, f"README runs no example of: {', '.join(missing)}"


def test_the_marker_is_found():
    assert len(BLOCKS) >= 4, "README.md lost its runnable blocks"
    sample = "text\n<!-- runnable slow -->\n```bash\necho hi\n```\n<!-- not it -->\n```bash\nexit 1\n```\n"
    [block] = runnable_blocks(sample)
    assert block == {"line": 3, "lang": "bash", "flags": {"slow"}, "code": "echo hi\n"}
    assert without_pip_installs("pip install -e '.[test]' && echo ok\n", "x") == "true&& echo ok\n"
    with pytest.raises(AssertionError, match="missing extra"):
        without_pip_installs("pip install -e '.[nope]'\n", "x")
    with pytest.raises(AssertionError, match="from the repository"):
        without_pip_installs("pip install piano-dist\n", "x")
