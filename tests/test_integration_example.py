"""The seed's integration example prints its expected lines and exits 0 on the embedded Redis."""
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "piano_integration_example.py"


def test_integration_example_prints_the_seed_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PIANO_REDIS_URL", "REDIS_URL")}
    env["PIANO_HOME"] = str(tmp_path / ".piano")
    try:
        result = subprocess.run([sys.executable, str(EXAMPLE)], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        out = result.stdout
        for line in ("🎹 PIANO Concurrent Framework Integration Demo", "=" * 60,
                     "✓ All memory systems registered for coordinated access",
                     "✓ Perception Module - parallel sensory processing",
                     "✓ Planning Module - state-coordinated goal management",
                     "✓ Retrieval Module - concurrent memory access",
                     "Results: 3/3", "act_description: 'greeting the guests arriving at the villa'",
                     "11. Shutting down…"):
            assert line in out, f"missing {line!r} in:\n{out}"
        assert out.index("✓ All memory") < out.index("✓ Perception") < out.index("Results: 3/3")
    finally:
        subprocess.run([sys.executable, "-m", "piano_dist.cli.main", "redis", "stop"], env=env, cwd=tmp_path,
                       capture_output=True, timeout=60)
