"""The multi-agent demo: many agents' modules running concurrently over one world."""
from .action import AgentActionModule
from .runner import DemoConfig, DemoRun

__all__ = ["AgentActionModule", "DemoConfig", "DemoRun"]
