"""A worker's log, as RQ users expect it: one line per finished task, and JSON lines on request.

At INFO each finished task gets one line with its id, ``module.method``, outcome and
duration; a failed or timed-out one is that line at WARNING, with the exception type
and message (the engine logs the full traceback at DEBUG where the task raised).
With ``--log-format json`` every line — RQ's own included — is one JSON object; the
task lines carry ``task_id``, ``call``, ``outcome`` and ``duration_seconds`` as fields.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from ..core.context import TaskContext

log = logging.getLogger("piano_dist.worker")

# Record attributes the JSON lines carry as fields when a record has them.
TASK_FIELDS = ("task_id", "call", "outcome", "duration_seconds", "worker", "exception_type",
               "exception_message")


def split_error(text: str) -> tuple[str, str]:
    """The exception type and message of an error as the engine records it
    (``Type: message`` then traceback lines), or ("", text) for a plain reason."""
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    kind, sep, message = first.partition(": ")
    if sep and kind.replace(".", "").replace("_", "").isalnum() and " " not in kind:
        return kind, message
    return "", first


class TaskLog:
    """The engine's outcome hook: logs each recorded outcome of this worker's tasks."""

    def __init__(self, worker_name: str):
        self.worker_name = worker_name

    def __call__(self, ctx: TaskContext, outcome: str, elapsed: float, payload: str) -> None:
        call = f"{ctx.module_name}.{ctx.method_name}"
        fields = {"task_id": ctx.task_id, "call": call, "outcome": outcome,
                  "duration_seconds": round(elapsed, 3), "worker": self.worker_name}
        took = f"{elapsed:.3f}s"
        if outcome == "completed":
            log.info("task %s %s completed in %s", ctx.task_id, call, took, extra=fields)
        elif outcome in ("failed", "retrying"):
            kind, message = split_error(payload)
            fields.update(exception_type=kind or None, exception_message=message)
            what = f"{kind}: {message}" if kind else message
            verb = "failed (will retry)" if outcome == "retrying" else "failed"
            log.warning("task %s %s %s in %s: %s", ctx.task_id, call, verb, took, what, extra=fields)
        elif outcome == "timed_out":
            fields.update(exception_message=payload)
            log.warning("task %s %s timed out after %s: %s", ctx.task_id, call, took, payload, extra=fields)
        else:  # cancelled while running
            log.info("task %s %s %s after %s", ctx.task_id, call, outcome, took, extra=fields)


class JsonLines(logging.Formatter):
    """One JSON object per record: time (ISO-8601 UTC), level, logger, message, the task
    fields the record carries, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data = {"time": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        for name in TASK_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def use_json_lines(level: str) -> None:
    """Send RQ's and piano-dist's records through one JSON handler on stderr.

    Installed before RQ sets up its own handlers, which it then leaves out (it adds
    them only to loggers that have none in effect)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    for name in ("rq", "piano_dist"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
