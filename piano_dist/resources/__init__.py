"""Locks on shared resources (memory systems, agent state) across processes."""
from ..errors import (DeadlockError, FencedWriteRejected, LockLimitError, LockTimeoutError,
                      ResourceAcquireTimeout, ResourceBusyError, UnknownResourceError)
from .coordinator import ResourceCoordinator
from .fencing import FENCE_CHECK_LUA, current_fence, fence_args, raise_if_fenced
from .types import AccessMode, ResourceLock, ResourceMetrics, ResourceType

__all__ = [
    "AccessMode", "DeadlockError", "FENCE_CHECK_LUA", "FencedWriteRejected", "LockLimitError",
    "LockTimeoutError", "ResourceAcquireTimeout", "ResourceBusyError", "ResourceCoordinator",
    "ResourceLock", "ResourceMetrics", "ResourceType", "UnknownResourceError", "current_fence",
    "fence_args", "raise_if_fenced",
]
