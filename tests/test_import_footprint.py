"""What a worker carries before it runs anything: numpy (~14 MB of an idle worker's
~40 MB) is imported only where memories are scored."""
import subprocess
import sys


def test_a_worker_and_the_cli_start_without_numpy():
    code = ("import sys, piano_dist, piano_dist.workers, piano_dist.cli.main, piano_dist.core.engine; "
            "print(sorted(m for m in sys.modules if m == 'numpy' or m.startswith('numpy.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_memories_still_score_with_numpy():
    from piano_dist.memory import scoring
    from piano_dist.memory.associative import pack_vector, unpack_vector

    packed = pack_vector([1.0, 0.0, 2.5])
    assert len(packed) == 24 and list(unpack_vector(packed)) == [1.0, 0.0, 2.5]
    assert unpack_vector(b"\x00" * 7) is None  # not a whole number of float64s
    assert list(scoring.cosines([1.0, 0.0], [[2.0, 0.0], None, [0.0, 3.0]])) == [1.0, 0.0, 0.0]
