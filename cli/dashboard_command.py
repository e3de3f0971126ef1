"""`piano-dist dashboard`: rq-dashboard on the Redis every other command uses.

Attached to the main CLI group, which puts ``--redis-url`` into PIANO_REDIS_URL.
rq-dashboard is an optional dependency (the ``dashboard`` extra), imported only here.
"""
from __future__ import annotations

import logging
import re
import sys

import click


@click.command()
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=9181, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (another than 127.0.0.1 exposes it: give --username/--password).")
@click.option("--username", envvar="PIANO_DASHBOARD_USERNAME", default=None,
              help="Ask every visitor for this user name (HTTP basic auth; with --password).")
@click.option("--password", envvar="PIANO_DASHBOARD_PASSWORD", default=None,
              help="The password for --username (or PIANO_DASHBOARD_PASSWORD).")
def dashboard(port: int, host: str, username: str | None, password: str | None) -> None:
    """Serve rq-dashboard (queues, workers, tasks) for this Redis."""
    try:
        from piano_dist.dashboard import make_app
    except ImportError as exc:  # rq-dashboard, or the six it imports undeclared, is missing
        click.echo(f"error: the dashboard needs rq-dashboard: pip install 'piano-dist[dashboard]' ({exc})",
                   err=True)
        sys.exit(2)
    from piano_dist.connection import resolve_redis_url

    if bool(username) != bool(password):
        raise click.UsageError("give --username and --password together")
    url = resolve_redis_url()
    app = make_app(url, username, password)
    # werkzeug logs every request (the page polls every 2.5 s); keep errors only.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    shown = re.sub(r"://[^@/]*@", "://***@", url)  # never print a password
    click.echo(f"piano-dist dashboard on http://{host}:{port}/ (Redis {shown})", err=True)
    if not username and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: the dashboard on {host} has no password: anyone who reaches port {port} can "
                   f"see every task and delete or requeue jobs; give --username/--password", err=True)
    app.run(host=host, port=port, threaded=True)
