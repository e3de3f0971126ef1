"""Enhanced cognitive modules: parallel perception, concurrent planning (the agent's
controller), distributed reflection and memory retrieval. Each runs in-process or as a
task on any worker, rebuilt there from ``(agent_state, **registration_config)``."""
from .perception import ParallelPerceptionModule
from .perception_cache import PerceptionCache
from .planning import ConcurrentPlanningModule
from .records import JsonRecord, PerceptionMetrics, PerceptionResult
from .reflection import DistributedReflectionModule
from .retrieval import MemoryRetrievalModule
from .sensors import SENSOR_WEIGHTS, SensorType

__all__ = [
    "ConcurrentPlanningModule", "DistributedReflectionModule", "JsonRecord", "MemoryRetrievalModule",
    "ParallelPerceptionModule", "PerceptionCache", "PerceptionMetrics", "PerceptionResult",
    "SENSOR_WEIGHTS", "SensorType",
]
