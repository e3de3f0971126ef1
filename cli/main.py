"""``piano-dist``: run workers, submit and inspect tasks, manage the embedded Redis.

Every command lives in a module of its own; this one builds the root group, gives
every command the global options (``--redis-url``/``--url``/``-u``, ``--prefix``, also
after the command's name) and reports errors as one ``error:`` line (see errors.py).
"""
from __future__ import annotations

import click

from .connect import add_late_options, root_options
from .errors import FriendlyGroup


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("piano-dist")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="piano-dist", message="%(prog)s %(version)s")
@root_options
def main() -> None:
    """piano-dist: generative-agent modules as concurrent tasks on RQ workers.

    Redis: --redis-url (or PIANO_REDIS_URL, REDIS_URL, RQ_REDIS_URL); without one, the
    embedded server in PIANO_HOME (./.piano). Shell completion: see README.
    """


def _attach_commands() -> None:
    from .bench_command import bench
    from .dashboard_command import dashboard
    from .demo_command import demo
    from .info_command import info
    from .llm_command import llm
    from .locks_command import locks
    from .module_commands import modules, pause, resume, unregister
    from .policy_commands import policy, quota
    from .redis_commands import redis
    from .task_commands import cancel, status, submit, tasks
    from .worker_command import worker

    for command in (worker, submit, status, tasks, cancel, pause, resume, unregister, modules, info, locks,
                    policy, quota, demo, llm, dashboard, bench, redis):
        add_late_options(command)
        main.add_command(command)


_attach_commands()

if __name__ == "__main__":
    main(prog_name="piano-dist")
