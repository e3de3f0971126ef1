"""The function RQ records as every piano-dist job's callable.

PianoWorker never calls it: it runs tasks itself, from the task's module registration.
A plain RQ worker that pops a piano-dist job would call it and get a clear error.
"""
from __future__ import annotations


def run_module_task(module_name: str, method_name: str, *args, **kwargs):
    raise RuntimeError(
        f"piano-dist task {module_name}.{method_name} was popped by a plain RQ worker; run "
        "piano-dist queues with `piano-dist worker` or `rq worker -w piano_dist.workers.PianoWorker`"
    )


# Recorded as `piano_dist.run_module_task` (an alias the package exports): every task's
# RQ data carries it, and a short name keeps small tasks' records compact.
FUNC_NAME = "piano_dist.run_module_task"
