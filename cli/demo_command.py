"""`piano-dist demo`: many agents' cognitive modules running concurrently over one world."""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--agents", type=click.IntRange(1, 5000), default=25, show_default=True)
@click.option("--ticks", type=click.IntRange(1, 10000), default=5, show_default=True)
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Worker processes the demo starts (ignored with --external-workers).")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Slots per worker process.")
@click.option("--seed", type=int, default=0, show_default=True, help="Makes the world and fake LLM reproducible.")
@click.option("--llm-latency", type=click.FloatRange(0, 60), default=0.05, show_default=True,
              help="Median latency of the fake LLM in seconds (PIANO_LLM=openai uses a real one).")
@click.option("--external-workers", is_flag=True, help="Use workers already running against this Redis.")
@click.option("--report", "report_path", default="piano-demo-report.json", show_default=True,
              help="Where to write the JSON report ('' for none).")
@click.option("--timeout", type=float, default=900.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def demo(agents, ticks, workers, concurrency, seed, llm_latency, external_workers, report_path, timeout,
         as_json) -> None:
    """Run N agents for T ticks: perception → planning → action per tick, retrieval
    alongside, reflection in the background, each agent at its own pace."""
    from piano_dist.demo import DemoConfig, DemoRun
    from piano_dist.demo.table import render

    config = DemoConfig(agents=agents, ticks=ticks, workers=workers, concurrency=concurrency, seed=seed,
                        llm_latency=llm_latency, external_workers=external_workers, timeout=timeout,
                        report_path=report_path or None)
    run = DemoRun(config)
    click.echo(f"piano-dist demo: {agents} agents × {ticks} ticks, "
               + ("external workers" if external_workers else f"{workers} workers × {concurrency} slots"),
               err=True)
    with click.progressbar(length=agents * ticks * 5, label="tasks", file=click.get_text_stream("stderr")) as bar:
        shown = [0]

        def progress(done: int, total: int) -> None:
            if done > shown[0]:
                bar.update(done - shown[0])
                shown[0] = done

        report = run.run(on_progress=progress)
    click.echo(json.dumps(report, indent=2, sort_keys=True) if as_json else render(report))
    if report_path:
        click.echo(f"report written to {report_path}", err=True)
    if report["tasks_by_status"].get("completed", 0) != report["tasks"]:
        raise SystemExit(1)
