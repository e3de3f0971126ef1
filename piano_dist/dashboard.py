"""rq-dashboard on piano-dist's Redis, with the two adjustments it needs.

Importing this module adjusts rq-dashboard in place (its own code is not forked), so
it serves both ``piano-dist dashboard`` and plain ``rq-dashboard --config
piano_dist.dashboard --redis-url ...`` (rq-dashboard imports its ``--config`` module
before it serves anything; this module defines no upper-case names, so it adds no
settings).

1. piano-dist's tasks are RQ jobs written with RQ's JSONSerializer. rq-dashboard reads
   job payloads and results with pickle unless it was started with ``--json``; then
   every job list and job page of piano-dist's queues fails (UnpicklingError).
2. rq-dashboard 0.9's job data (``/<n>/data/job/<id>.json``, which the job page loads)
   does ``di.decode()`` on each of ``job.dependency_ids``: written for RQ 1.x, whose
   property returned the raw SMEMBERS bytes. RQ 3 returns str, so the page of any job
   with dependencies fails with AttributeError. The job class rq-dashboard's views
   use is swapped for a subclass that hands them bytes again.

3. rq-dashboard 0.9's pages fill in task data (a task's error, result, metadata, worker
   and queue names) with underscore.js ``<%= … %>``, which inserts raw HTML: a task
   failing with ``<img src=x onerror=…>`` in its error ran that script in the browser
   of whoever opened its page. Task data is written by whoever can write to Redis, so
   the pages are rendered from templates whose interpolations escape (``<%- … %>``);
   the two that already escape by hand (``$('<div/>').text(…).html()``) are left as
   they are. The JSON the pages load is unchanged.
4. Queues in priority order and each worker's slots: see :mod:`piano_dist.dashboard_views`
   (its Workers page is piano-dist's own template, piano_dist/templates/, which escapes too).
5. rq-dashboard connects through ``redis_sentinel_url``, which neither decodes
   percent-encoded passwords nor knows ``rediss+sentinel://``; its connect function is
   swapped for piano-dist's (:func:`piano_dist.connection.client_for_url`), so the
   dashboard reaches Redis exactly as workers do (TLS, ACL users, Sentinel, the
   shared retry policy), one client per URL instead of one per request.

rq-dashboard 0.9 also imports ``six`` without declaring it: the ``dashboard`` extra
installs it (``pip install 'piano-dist[dashboard]'``).
"""
from __future__ import annotations

import inspect
import re
from functools import lru_cache
from pathlib import Path

import rq_dashboard.web as _web  # ImportError here: rq-dashboard (or six) is missing
from rq.job import Job
from rq.serializers import JSONSerializer

from .dashboard_views import OWN_TEMPLATES, install


class DashboardJob(Job):
    """The job class rq-dashboard's views fetch with (nothing else uses it)."""

    @property
    def dependency_ids(self) -> list:
        # RQ's own record of a job's parents is the rq:job:<id>:dependencies set, which
        # RQ's enqueue fills; piano-dist keeps its graph in its own keys and records a
        # task's parents in the hash's `dependency_ids` field (read into _dependency_ids),
        # so both are listed. Bytes, because that is what rq-dashboard 0.9 decodes.
        ids = list(self._dependency_ids)
        ids += [i for i in super().dependency_ids if i not in ids]
        return [i.encode() for i in ids]


def _decodes_dependency_ids() -> bool:
    """Whether the installed rq-dashboard still has the call that needs bytes."""
    try:
        return ".decode(" in inspect.getsource(_web.job_info)
    except (OSError, TypeError):  # no source shipped: assume the 0.9 code
        return True


_TEMPLATES = Path(_web.__file__).parent / "templates"
# An underscore.js raw interpolation, unless it already escapes by hand.
_RAW_INTERPOLATION = re.compile(r"<%=(?!\s*\$\('<div/>'\)\.text\()")


@lru_cache(maxsize=None)
def escaping_template(name: str) -> str:
    """rq-dashboard's template ``name`` (or piano-dist's own of that name, see
    dashboard_views) with every raw ``<%=`` made an escaping ``<%-``."""
    own = OWN_TEMPLATES / name
    source = own if own.is_file() else _TEMPLATES / name
    return _RAW_INTERPOLATION.sub("<%-", source.read_text(encoding="utf-8"))


def _render_escaping(template_name: str, **context):
    from flask import render_template_string

    return render_template_string(escaping_template(template_name), **context)


_clients: dict = {}


def connect(url: str, sentinel_options: dict | None = None, client_options: dict | None = None):
    """rq-dashboard's ``from_url`` (it unpacks ``(sentinel, client)``), on piano-dist's
    connections: one client per URL, kept."""
    from .connection import client_for_url

    client = _clients.get(url)
    if client is None:
        client = _clients.setdefault(url, client_for_url(url))
    return None, client


def apply_compat() -> None:
    """Adjust rq-dashboard for piano-dist (idempotent); done on import of this module."""
    _web.config.serializer = JSONSerializer
    _web.from_url = connect
    if _web.Job is Job and _decodes_dependency_ids():
        _web.Job = DashboardJob
    # rq-dashboard's views call the module's render_template by name.
    _web.render_template = _render_escaping
    install()  # queues in priority order, each worker's slots


def make_app(redis_url: str, username: str | None = None, password: str | None = None):
    """rq-dashboard's Flask app, adjusted, reading ``redis_url``; with ``username`` and
    ``password`` every page asks for them (HTTP basic authentication)."""
    from rq_dashboard.cli import make_flask_app

    apply_compat()
    app = make_flask_app(None, username, password, "")
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    _web.setup_rq_connection(app)
    return app


apply_compat()
