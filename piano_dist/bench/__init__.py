"""piano-dist's benchmark suite: piano-dist side by side with plain RQ 3 on one private Redis.

Run it with ``piano-dist bench [--quick] [--json PATH]`` or ``python benchmarks/run.py``.
Each workload is one module (w1_noop … w7_agents); :mod:`.runner` runs them and prints
the table. Figures are measured, never asserted.
"""
