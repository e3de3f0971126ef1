"""Migration: a program written for the original framework runs with only its imports changed.

tests/support/seed_style/village.py keeps the original's import lines; this test rewrites
those lines (and nothing else) to piano_dist, as README's migration section says, and
runs it as a user would, against the private Redis.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

PROGRAM = Path(__file__).parent / "support" / "seed_style" / "village.py"
ORIGINAL_MODULES = ("concurrent_module_manager", "module_executor", "task_scheduler",
                    "resource_coordinator", "state_coordinator")
IMPORT_LINE = re.compile(rf"^from ({'|'.join(ORIGINAL_MODULES)}) import", re.MULTILINE)
ENHANCED_LINE = re.compile(r"^from enhanced_modules\.[a-z_]+ import", re.MULTILINE)


def rewrite_imports(source: str) -> str:
    source = IMPORT_LINE.sub("from piano_dist import", source)
    return ENHANCED_LINE.sub("from piano_dist.enhanced_modules import", source)


def test_only_import_lines_change():
    original = PROGRAM.read_text().splitlines()
    ported = rewrite_imports(PROGRAM.read_text()).splitlines()
    changed = [(a, b) for a, b in zip(original, ported) if a != b]
    assert len(original) == len(ported) and len(changed) == len(ORIGINAL_MODULES)
    assert all(a.startswith("from ") and b.startswith("from piano_dist import") for a, b in changed)


def test_a_seed_style_program_runs_with_only_its_imports_changed(redis_url, tmp_path):
    script = tmp_path / "village.py"
    script.write_text(rewrite_imports(PROGRAM.read_text()))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PIANO_REDIS_URL"] = redis_url
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    assert result.stdout.splitlines() == [
        "round 0: perceived [1], planned ['goal-0'], modules 2, active 0",
        "round 1: perceived [2], planned ['goal-1'], modules 2, active 0",
        "round 2: perceived [3], planned ['goal-2'], modules 2, active 0",
        "plans: ['goal-0', 'goal-1', 'goal-2']",
        "locks held: 1, type agent_state",
        "locks held: 1, type agent_state",
        "state 0: walking to the cafe (0), mood {'energy': 4}, tile [5, 5], subscribers ['planning'], "
        "snapshot kept True",
        "state 1: walking to the cafe (1), mood {'energy': 3}, tile [5, 6], subscribers ['planning'], "
        "snapshot kept True",
        "scheduled order: ['react', 'replan', 'reflect'], total scheduled 9",  # the rounds' 6 tasks and these 3: metrics are the cluster's
        "direct: saw 9 tiles",
    ]
