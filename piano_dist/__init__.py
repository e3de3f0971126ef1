"""piano-dist: generative-agent cognitive modules as concurrent tasks on RQ workers."""
from .core.client import TaskSpec
from .core.context import TaskContext, current_task, waiting
from .core.runtime import run_module_task  # noqa: F401  (the callable RQ records for every task)
from .core.types import (ExecutorMetrics, ModuleMetrics, ModuleState, ModuleTask, Priority,
                         TaskStatus)
from .errors import (DeadlockError, DependencyCycleError, EmbeddedRedisError, InvalidArgument,
                     LockTimeoutError, ManagerShutdownError, PianoError, QueueFullError, SecurityError,
                     TaskFailedError, TaskTimeoutError, UnknownModuleError, UnknownTaskError)
from .executor import ModuleExecutor
from .manager import ConcurrentModuleManager
from .memory import (AssociativeMemory, CausalRelationType, CircularBuffer, ConceptNode,
                     ConceptType, Episode, EpisodeType, EpisodicMemory, SemanticMemory,
                     SemanticRelationType, TemporalMemory)
from .modules.base import BaseModule
from .resources import (AccessMode, FencedWriteRejected, LockLimitError, ResourceAcquireTimeout,
                        ResourceBusyError, ResourceCoordinator, ResourceLock, ResourceMetrics,
                        ResourceType, UnknownResourceError, current_fence)
from .scheduler import SchedulingPolicy, TaskScheduler
from .security import SecurityValidator
from .state import (ConflictResolution, RedisAgentState, StateChange, StateChangeType,
                    StateCoordinator, StateSnapshot, SyncMetrics, SyncPolicy)

__version__ = "0.1.0"

__all__ = [
    "AccessMode", "AssociativeMemory", "BaseModule", "CausalRelationType", "CircularBuffer",
    "ConceptNode", "ConceptType", "ConcurrentModuleManager", "ConflictResolution",
    "DeadlockError", "DependencyCycleError", "EmbeddedRedisError", "Episode", "EpisodeType",
    "EpisodicMemory", "ExecutorMetrics", "FencedWriteRejected", "InvalidArgument", "LockTimeoutError",
    "ManagerShutdownError", "ModuleExecutor", "ModuleMetrics", "ModuleState", "ModuleTask",
    "PianoError", "Priority", "QueueFullError", "RedisAgentState", "ResourceCoordinator",
    "ResourceLock", "ResourceMetrics", "ResourceType", "SchedulingPolicy", "SecurityError",
    "SecurityValidator", "SemanticMemory", "SemanticRelationType", "StateChange",
    "StateChangeType", "StateCoordinator", "StateSnapshot", "SyncMetrics", "SyncPolicy",
    "TaskContext", "TaskFailedError", "TaskScheduler", "TaskSpec", "TaskStatus",
    "TaskTimeoutError", "TemporalMemory", "UnknownModuleError", "UnknownTaskError",
    "current_task", "waiting", "LockLimitError", "ResourceAcquireTimeout", "ResourceBusyError",
    "UnknownResourceError", "current_fence",
]
