"""Run one task call in a child process that can be killed at its deadline.

For CPU-bound modules: a thread cannot be stopped, a process can. The child is forked
from the worker (so it has the worker's imported code and built module), runs the
call, sends back ("ok", json) or ("error", text), and exits.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import traceback
from typing import Any, Callable

from .context import current_task

_FORK = multiprocessing.get_context("fork")


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the worker dies, so a SIGKILLed worker leaves no orphan
    running the attempt that is about to be re-run elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        return
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(1)


def _child(call: Callable[[], Any], conn, parent: int) -> None:
    _die_with_parent(parent)
    try:
        value = call()
        conn.send(("ok", json.dumps(value)))
    except BaseException as exc:  # everything the call raises is the task's outcome
        # The full traceback at DEBUG, in the worker's log (the child inherits its handlers).
        ctx = current_task()  # set by the call, still set here
        task_id = ctx.task_id if ctx else "?"
        logging.getLogger("piano_dist.engine").debug("task %s raised (task process %s)", task_id, os.getpid(),
                                                     exc_info=True, extra={"task_id": task_id})
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{''.join(tb[-3:])}"[:8000]))
    finally:
        conn.close()
        os._exit(0)  # skip the parent's atexit handlers and thread joins


def run_in_child(call: Callable[[], Any], should_stop: Callable[[], bool], poll: float = 0.02,
                 on_start: Callable[[int], None] | None = None) -> tuple[str, str]:
    """Run ``call()`` in a forked child. Returns ("completed", json) or ("failed", text);
    ("killed", reason) when ``should_stop()`` turned true and the child was killed."""
    receiver, sender = _FORK.Pipe(duplex=False)
    process = _FORK.Process(target=_child, args=(call, sender, os.getpid()), daemon=True)
    process.start()
    sender.close()
    if on_start:
        on_start(process.pid)
    try:
        while True:
            if receiver.poll(poll):
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    kind, payload = "error", f"task process {process.pid} exited without a result"
                return ("completed", payload) if kind == "ok" else ("failed", payload)
            if should_stop():
                process.kill()
                return "killed", f"task process {process.pid} killed"
            if not process.is_alive() and not receiver.poll(0):
                return "failed", f"task process {process.pid} died with exit code {process.exitcode}"
    finally:
        process.join(timeout=5)
        receiver.close()
