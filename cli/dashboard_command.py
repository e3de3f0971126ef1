"""`piano-dist dashboard`: rq-dashboard on the Redis every other command uses.

``--redis-url`` (before or after the command) goes through PIANO_REDIS_URL.
rq-dashboard is an optional dependency (the ``dashboard`` extra), imported only here.
"""
from __future__ import annotations

import logging
import socket

import click

from .connect import check_reachable, redis_url, shown_url
from .errors import CliError


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
        raise CliError(f"the dashboard needs rq-dashboard: pip install 'piano-dist[dashboard]' ({exc})") from None
    if bool(username) != bool(password):
        raise click.UsageError("give --username and --password together")
    url = redis_url()
    check_reachable(url)
    if not _port_free(host, port):
        raise CliError(f"cannot serve the dashboard on {host}:{port}: the port is in use (choose another: --port)")
    app = make_app(url, username, password)
    # werkzeug logs every request (the page polls every 2.5 s); keep errors only.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    click.echo(f"piano-dist dashboard on http://{host}:{port}/ (Redis {shown_url(url)})", err=True)
    if not username and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: the dashboard on {host} has no password: anyone who reaches port {port} can "
                   f"see every task and delete or requeue jobs; give --username/--password", err=True)
    app.run(host=host, port=port, threaded=True)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
