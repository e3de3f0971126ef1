"""Exceptions raised by piano-dist's public API."""
from __future__ import annotations


class PianoError(Exception):
    """Base class of every piano-dist error."""


class InvalidArgument(PianoError, ValueError):
    """An argument or input refused (a bad task spec, a non-positive timeout, a value that
    is not JSON, a name :class:`piano_dist.SecurityValidator` rejects); the message says
    what was wrong and nothing was stored."""


# The name the original framework's API raises; the same class, so ``except SecurityError``
# catches every argument error.
SecurityError = InvalidArgument


class UnknownModuleError(PianoError, KeyError):
    """A module name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "unknown module"


class UnknownTaskError(PianoError, ValueError):
    """A task id that does not exist (for example as a dependency)."""


class DependencyCycleError(PianoError, ValueError):
    """Dependencies that would form a cycle."""


class QueueFullError(PianoError, RuntimeError):
    """Submission refused because the queue already holds ``max_queue_size`` tasks."""


class ManagerShutdownError(PianoError, RuntimeError):
    """The manager was shut down and accepts no more work."""


class TaskTimeoutError(PianoError, TimeoutError):
    """Waiting for a task took longer than the caller allowed."""


class TaskFailedError(PianoError, RuntimeError):
    """``get_result`` on a task that did not complete."""

    def __init__(self, task_id: str, status: str, error: str | None):
        super().__init__(f"task {task_id} ended {status}: {error or 'no error recorded'}")
        self.task_id = task_id
        self.status = status
        self.error = error


class DeadlockError(PianoError, RuntimeError):
    """A lock wait that was part of a wait-for cycle and was chosen to abort."""


class LockTimeoutError(PianoError, TimeoutError):
    """A resource lock was not granted within the timeout."""


class EmbeddedRedisError(PianoError, RuntimeError):
    """The embedded Redis server could not be started."""


class FencedWriteRejected(PianoError, RuntimeError):
    """A write carried a fencing token older than the resource's latest grant.

    The writer's lock lease ran out and someone else was granted the resource since;
    the write was refused so it cannot overwrite the newer holder's work.
    """


class UnknownResourceError(PianoError, KeyError):
    """A resource id that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown resource"


class ResourceBusyError(PianoError, RuntimeError):
    """The resource still has holders or waiters (e.g. on unregister)."""


class LockLimitError(PianoError, RuntimeError):
    """This coordinator already holds ``max_concurrent_locks`` locks."""


class ResourceAcquireTimeout(LockTimeoutError, RuntimeError):
    """``acquire_context`` timed out (also a RuntimeError, for code written against the original API)."""


class StateConflictError(PianoError, RuntimeError):
    """A state write based on a version that is no longer current (compare-and-set failed).

    ``paths`` names each path whose version moved; a transaction raising this applied
    none of its changes.
    """

    def __init__(self, message: str, paths: list[str] | None = None, transaction_id: str | None = None):
        super().__init__(message)
        self.paths = list(paths or [])
        self.transaction_id = transaction_id


class StateWriteError(PianoError, ValueError):
    """A state write that cannot apply to the current state (CREATE of an existing path,
    DELETE of a missing one, a path below a value that is not an object); nothing was written."""


class UnknownSnapshotError(PianoError, KeyError):
    """A snapshot id that does not exist (or was evicted past ``max_snapshots``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown snapshot"
