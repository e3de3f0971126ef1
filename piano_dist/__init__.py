"""piano-dist: generative-agent cognitive modules as concurrent tasks on RQ workers."""
from .core.client import TaskSpec
from .core.context import TaskContext, current_task
from .core.types import (ExecutorMetrics, ModuleMetrics, ModuleState, ModuleTask, Priority,
                         TaskStatus)
from .errors import (DeadlockError, DependencyCycleError, EmbeddedRedisError, LockTimeoutError,
                     ManagerShutdownError, PianoError, QueueFullError, SecurityError,
                     TaskFailedError, TaskTimeoutError, UnknownModuleError, UnknownTaskError)
from .executor import ModuleExecutor
from .manager import ConcurrentModuleManager
from .modules.base import BaseModule
from .scheduler import SchedulingPolicy, TaskScheduler
from .security import SecurityValidator

__version__ = "0.1.0"

__all__ = [
    "BaseModule", "ConcurrentModuleManager", "DeadlockError", "DependencyCycleError",
    "EmbeddedRedisError", "ExecutorMetrics", "LockTimeoutError", "ManagerShutdownError",
    "ModuleExecutor", "ModuleMetrics", "ModuleState", "ModuleTask", "PianoError", "Priority",
    "QueueFullError", "SchedulingPolicy", "SecurityError", "SecurityValidator", "TaskContext",
    "TaskFailedError", "TaskScheduler", "TaskSpec", "TaskStatus", "TaskTimeoutError",
    "UnknownModuleError", "UnknownTaskError", "current_task",
]
