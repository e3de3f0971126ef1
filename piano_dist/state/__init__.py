"""Agent state in Redis: StateCoordinator, RedisAgentState and their types."""
from .agent_state import RedisAgentState, agent_id_of
from .coordinator import StateCoordinator
from .paths import validate_state_path, validate_state_value
from .types import (
    ChangeOutcome, ChangeStatus, ConflictResolution, StateChange, StateChangeType, StateSnapshot, SyncMetrics,
    SyncPolicy,
)

__all__ = [
    "StateCoordinator", "RedisAgentState", "agent_id_of", "StateChange", "StateChangeType", "SyncPolicy",
    "ConflictResolution", "StateSnapshot", "SyncMetrics", "ChangeOutcome", "ChangeStatus",
    "validate_state_path", "validate_state_value",
]
