"""`piano-dist bench`: piano-dist and plain RQ 3 side by side on one private Redis."""
from __future__ import annotations

import click

from piano_dist.bench.runner import WORKLOADS


@click.command()
@click.option("--quick", is_flag=True, help="A short run (fewer tasks per workload).")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Where to write the results (default benchmarks/results/latest.json).")
@click.option("--repeat", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Measure each workload this many times and keep the best.")
@click.option("--only", multiple=True, type=click.Choice(WORKLOADS),
              help="Run only these workloads (repeatable).")
@click.option("--tiny", is_flag=True, hidden=True, help="20 tasks per workload (smoke test).")
def bench(quick: bool, json_path: str | None, repeat: int, only: tuple, tiny: bool) -> None:
    """Benchmarks W1-W7 against plain RQ (SimpleWorker and forking Worker, 2 processes each).

    Starts its own redis-server on a free port; the configured Redis is not touched.
    """
    from piano_dist.bench.runner import main

    main(quick=quick, json_path=json_path, tiny=tiny, repeat=repeat, only=only or WORKLOADS)
