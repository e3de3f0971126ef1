"""Run the benchmark suite: ``python benchmarks/run.py [--quick] [--json PATH] [--repeat N]``.

The same as ``piano-dist bench``; the implementation is piano_dist/bench/ (one module
per workload: w1_noop … w7_agents). Results go to benchmarks/results/latest.json.
"""
from piano_dist.cli.bench_command import bench

if __name__ == "__main__":
    bench()
