"""BaseModule: what every cognitive module extends."""
from __future__ import annotations

import logging
from typing import Any


class RunNotDefined(NotImplementedError):
    """A module class that was run without defining run()."""


class BaseModule:
    """A cognitive module (perception, planning, …) whose public methods run as tasks.

    ``agent_state`` is whatever the application shares between modules. Subclasses
    override :meth:`run`; any other public method defined on the class can be submitted
    as a task too. While a method runs as a task, ``self.task`` is its
    :class:`piano_dist.core.context.TaskContext` (task id, cancellation flag, …) in the
    executing thread.
    """

    def __init__(self, agent_state: Any = None, **config: Any):
        self.agent_state = agent_state
        self.config = dict(config)
        self.logger = logging.getLogger(f"piano_dist.module.{type(self).__name__}")

    def run(self) -> Any:
        raise RunNotDefined(f"{type(self).__name__} does not define run()")

    def shutdown(self) -> None:
        """Release what the module holds (pools, connections). Its owner calls this; being
        defined here keeps it (and overrides of it) out of the methods tasks may run."""

    def on_state_change(self, changes) -> None:
        """Called with applied state changes on subscribed paths; override to react."""

    @property
    def task(self):
        from ..core.context import current_task

        return current_task()
