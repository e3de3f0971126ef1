"""`piano-dist demo`: many agents' cognitive modules running concurrently over one world.

On a timeout or an interrupt (Ctrl-C, SIGTERM) the run cancels its unfinished tasks
(DemoRun.cancel_unfinished), so nothing stays queued for its unregistered modules, and
the command prints one ``error:`` line. Progress goes to stderr: a bar on a terminal,
otherwise a line every few seconds (logs and CI keep readable lines, not a bare bar).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import click

from piano_dist.arguments import MAX_TTL

from .connect import check_reachable, redis_url
from .errors import INTERRUPTED_STATUS, USAGE_STATUS, fail


class LineProgress:
    """Without a terminal: ``demo: 120/625 tasks ended (19%) after 6.0 s`` every few seconds."""

    def __init__(self, interval: float):
        self.interval = interval
        self.started = time.monotonic()
        self.last = self.started
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval or (done == total and self.shown != total):
            self.last, self.shown = now, done
            percent = 100 * done // total if total else 100
            click.echo(f"demo: {done}/{total} tasks ended ({percent}%) after {now - self.started:.1f} s", err=True)


def _check_writable_file(option: str, path: str) -> None:
    """Refuse a file the run could not write before the run, not after it."""
    if not path or os.path.isdir(path):
        fail(f"{option}: {path!r} is not a file name", USAGE_STATUS)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        fail(f"{option}: directory {parent} does not exist", USAGE_STATUS)
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        fail(f"{option}: cannot write {path}", USAGE_STATUS)


def _note_partial_timeline(run) -> None:
    if run.timeline_written:
        click.echo(f"timeline of the run so far written to {run.config.timeline_path}", err=True)


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


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
@click.option("--timeline", "timeline_path", metavar="FILE.html", default=None,
              help="Also write the run as a self-contained HTML page: each agent's (or worker slot's) tasks "
                   "on a time axis, slots busy and model calls in flight.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=900.0, show_default=True,
              help="Seconds before the run gives up (its unfinished tasks are cancelled).")
@click.option("--result-ttl", type=click.IntRange(min=0, max=MAX_TTL), default=0, show_default=True,
              metavar="SECONDS",
              help="How long each task's record stays once it ends. 0 keeps none (the report is built from "
                   "the tasks' events); more keeps them to look at, e.g. in rq-dashboard.")
@click.option("--progress-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between progress lines when stderr is not a terminal.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.pass_context
def demo(ctx, agents, ticks, workers, concurrency, seed, llm_latency, external_workers, report_path, timeline_path,
         timeout, result_ttl, progress_interval, as_json) -> None:
    """Run N agents for T ticks: perception → planning → action per tick, retrieval
    alongside, reflection in the background, each agent at its own pace."""
    from piano_dist.demo import DemoConfig, DemoRun
    from piano_dist.demo.table import render

    if timeline_path is not None:
        _check_writable_file("--timeline", timeline_path)
    config = DemoConfig(agents=agents, ticks=ticks, workers=workers, concurrency=concurrency, seed=seed,
                        llm_latency=llm_latency, external_workers=external_workers, timeout=timeout,
                        report_path=report_path or None, timeline_path=timeline_path, result_ttl=result_ttl)
    url = redis_url()
    check_reachable(url)
    run = DemoRun(config, redis_url=url)
    click.echo(f"piano-dist demo: {agents} agents × {ticks} ticks, "
               + ("external workers" if external_workers else f"{workers} workers × {concurrency} slots"),
               err=True)
    if external_workers:
        given = {name for name in ("llm_latency", "seed")
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
        effects = (["--llm-latency has no effect"] if "llm_latency" in given else []) + \
                  (["--seed seeds only the world and its moves"] if "seed" in given else [])
        if effects:
            click.echo("note: with --external-workers the fake model's seed and latency come from the workers' "
                       "environment (PIANO_FAKE_LLM_SEED, PIANO_FAKE_LLM_LATENCY): " + "; ".join(effects), err=True)
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        stream = click.get_text_stream("stderr")
        if stream.isatty():
            with click.progressbar(length=agents * ticks * 5, label="tasks", file=stream) as bar:
                shown = [0]

                def progress(done: int, total: int) -> None:
                    if done > shown[0]:
                        bar.update(done - shown[0])
                        shown[0] = done

                report = run.run(on_progress=progress)
        else:
            report = run.run(on_progress=LineProgress(progress_interval))
    except TimeoutError as exc:
        _note_partial_timeline(run)
        fail(f"{exc}; its unfinished tasks were cancelled", USAGE_STATUS)
    except KeyboardInterrupt:
        _note_partial_timeline(run)
        fail("interrupted; the demo's unfinished tasks were cancelled", INTERRUPTED_STATUS)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(json.dumps(report, indent=2, sort_keys=True) if as_json else render(report))
    if report_path:
        click.echo(f"report written to {report_path}", err=True)
    if timeline_path:
        click.echo(f"timeline written to {timeline_path}", err=True)
    if report["tasks_by_status"].get("completed", 0) != report["tasks"]:
        sys.exit(1)
