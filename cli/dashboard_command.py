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
              help="Interface to listen on (0.0.0.0 exposes it: it has no authentication).")
def dashboard(port: int, host: str) -> None:
    """Serve rq-dashboard (queues, workers, tasks) for this Redis."""
    try:
        from piano_dist.dashboard import make_app
    except ImportError as exc:  # rq-dashboard, or the six it imports undeclared, is missing
        click.echo(f"error: the dashboard needs rq-dashboard: pip install 'piano-dist[dashboard]' ({exc})",
                   err=True)
        sys.exit(2)
    from piano_dist.connection import resolve_redis_url

    url = resolve_redis_url()
    app = make_app(url)
    # werkzeug logs every request (the page polls every 2.5 s); keep errors only.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    shown = re.sub(r"://[^@/]*@", "://***@", url)  # never print a password
    click.echo(f"piano-dist dashboard on http://{host}:{port}/ (Redis {shown})", err=True)
    app.run(host=host, port=port, threaded=True)
