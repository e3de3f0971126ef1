"""`piano-dist bench` in its tiniest mode: every workload appears in the table and the JSON.

Figures are never asserted (benchmarks run on demand, not in CI); this only checks that
the suite runs end to end on its own private Redis.
"""
import json
import subprocess
import sys


def test_bench_tiny_reports_every_workload(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "piano_dist.cli.main", "bench", "--tiny", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    for key in ("w1", "w2", "w3", "w4", "w5", "w6", "w7"):
        assert key in results, key
        assert f"| W{key[1]} " in proc.stdout, key
    for system in ("piano", "simple", "fork"):
        assert system in results["w1"] and system in results["w2"] and system in results["w3"]
    assert set(results["w4"]) == {"piano", "rq"}
    assert set(results["w5"]) == {"piano", "python-redis-lock"}
