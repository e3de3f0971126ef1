"""The seed's PIANO integration demo on piano-dist.

Memory systems registered with the ResourceCoordinator; perception, planning and
retrieval running concurrently as tasks; state changes through the StateCoordinator.
Runs on the embedded Redis when no PIANO_REDIS_URL is set:

    python examples/piano_integration_example.py
"""
from __future__ import annotations

import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from piano_dist import (AccessMode, BaseModule, CircularBuffer, ConcurrentModuleManager, EpisodicMemory,
                        Priority, ResourceType, SemanticMemory, TemporalMemory)
from piano_dist.enhanced_modules import ParallelPerceptionModule
from piano_dist.world import GridWorld

AGENT = "Isabella Rodriguez"
MEMORIES = {
    "episodic_memory": ResourceType.EPISODIC_MEMORY,
    "semantic_memory": ResourceType.SEMANTIC_MEMORY,
    "temporal_memory": ResourceType.TEMPORAL_MEMORY,
    "circular_buffer": ResourceType.CIRCULAR_BUFFER,
}


class MockAgentState:
    """What the legacy persona exposed: a name, a tile, an activity and its memories."""

    def __init__(self):
        self.name = AGENT
        self.curr_tile = [15, 20]
        self.act_description = "reading at the cafe"
        self.episodic_memory = EpisodicMemory(max_episodes=50, agent_id=AGENT)
        self.semantic_memory = SemanticMemory(max_concepts=200, agent_id=AGENT)
        self.temporal_memory = TemporalMemory(retention_hours=2, agent_id=AGENT)
        self.circular_buffer = CircularBuffer(max_size=20, agent_id=AGENT)


class PerceptionModule(BaseModule):
    """Parallel perception of the villa; keeps percepts above 0.5 confidence in
    episodic memory, written under the memory's WRITE lock."""

    def __init__(self, agent_state, manager, world):
        super().__init__(agent_state)
        self.manager = manager
        self.perception = ParallelPerceptionModule(agent_state, max_workers=3, attention_bandwidth=5,
                                                   vision_radius=4, agent_id="isabella", environment=world)

    def run(self):
        results = self.perception.run()
        kept = [r for r in results if r.confidence > 0.5]
        with self.manager.resource_coordinator.acquire_context(
                "episodic_memory", AccessMode.WRITE, "perception") as memory:
            for r in kept:
                memory.add_event(f"Perceived {r.sensor_type}: {r.processed_data.get('summary', '')}",
                                 "perception", importance=r.confidence, location="villa")
        return {"percepts": len(results), "stored": len(kept)}


class PlanningModule(BaseModule):
    """Decides the next activity and proposes it through the StateCoordinator."""

    def __init__(self, agent_state, manager):
        super().__init__(agent_state)
        self.manager = manager
        self.changes_seen = 0

    def run(self):
        decision = "greeting the guests arriving at the villa"
        change_id = self.manager.state_coordinator.propose_change(
            "planning", "act_description", decision, priority=1)
        return {"decision": decision, "change_id": change_id}

    def on_state_change(self, changes):
        self.changes_seen += len(changes)


class RetrievalModule(BaseModule):
    """Reads three memories at once, each under a shared READ lock."""

    def __init__(self, agent_state, manager):
        super().__init__(agent_state)
        self.manager = manager

    def _read(self, resource_id):
        with self.manager.resource_coordinator.acquire_context(resource_id, AccessMode.READ, "retrieval") as memory:
            if resource_id == "episodic_memory":
                return len(memory.get_recent_episodes(hours_back=1))
            if resource_id == "circular_buffer":
                return len(memory.get_recent_memories(5))
            return len(memory.retrieve_recent_memories(hours_back=1))

    def run(self):
        with ThreadPoolExecutor(max_workers=3) as pool:
            counts = list(pool.map(self._read, ("episodic_memory", "circular_buffer", "temporal_memory")))
        return dict(zip(("episodes", "buffered", "temporal"), counts))


def register_memories(coordinator, agent_state):
    for resource_id, kind in MEMORIES.items():
        memory = getattr(agent_state, resource_id)
        try:
            coordinator.register_resource(resource_id, memory, kind)
        except ValueError:  # registered by an earlier run against the same Redis
            coordinator.attach_resource(resource_id, memory)


def main() -> int:
    print("🎹 PIANO Concurrent Framework Integration Demo")
    print("=" * 60)
    agent_state = MockAgentState()
    print(f"Agent: {agent_state.name} at {tuple(agent_state.curr_tile)}, {agent_state.act_description}")
    agent_state.circular_buffer.add_memory("Had coffee with Klaus", "event", 0.6)
    agent_state.temporal_memory.add_memory("Opened the cafe", "activity", 0.5)

    world = GridWorld.create("villa", 24, 24, seed=7, n_objects=10, agents=["isabella", "klaus", "maria"])
    world.move_agent("isabella", 15, 20)
    world.place_agent("klaus", 16, 20, "painting")
    world.add_event(16, 20, "klaus", "chat with", "isabella")

    manager = ConcurrentModuleManager(agent_state=agent_state, max_workers=4, max_queue_size=20)
    try:
        print(f"Manager: {manager.max_workers} workers, queue {manager.max_queue_size}")
        register_memories(manager.resource_coordinator, agent_state)
        print("✓ All memory systems registered for coordinated access")
        for resource_id in MEMORIES:
            print(f"  - {resource_id}")

        perception = PerceptionModule(agent_state, manager, world)
        planning = PlanningModule(agent_state, manager)
        retrieval = RetrievalModule(agent_state, manager)
        for name, module in (("perception", perception), ("planning", planning), ("retrieval", retrieval)):
            manager.register_module(name, module)
        state = manager.state_coordinator
        state.register_module("planning", planning)
        state.subscribe_to_path("planning", "act_description")
        print("✓ Perception Module - parallel sensory processing")
        print("✓ Planning Module - state-coordinated goal management")
        print("✓ Retrieval Module - concurrent memory access")
        print(f"  subscriptions: {state.get_coordination_status()['subscriptions']}")

        ids = {"perception": manager.submit_task("perception", priority=Priority.HIGH),
               "planning": manager.submit_task("planning", priority=Priority.NORMAL),
               "retrieval": manager.submit_task("retrieval", priority=Priority.NORMAL)}
        for name, task_id in ids.items():
            print(f"Submitted {name}: {task_id}")
        statuses = manager.wait(ids.values(), timeout=30)
        for name, task_id in ids.items():
            print(f"  {name}: {statuses[task_id]['status']} -> {statuses[task_id].get('result')}")
        done = sum(st["status"] == "completed" for st in statuses.values())
        print(f"Results: {done}/3")

        print(f"State version: {state.get_version()}, act_description: {state.get_value('act_description')!r}, "
              f"pending: {state.get_coordination_status()['pending_changes']}")
        locks = manager.resource_coordinator.get_coordinator_metrics()
        print(f"Lock requests: {locks.total_requests}, acquisitions: {locks.successful_acquisitions}, "
              f"average wait: {locks.average_wait_time * 1000:.2f} ms")
        system = manager.get_system_status()
        executor = manager.module_executor.get_metrics()
        print(f"Modules: {system['registered_modules']}, completed: {system['completed_tasks']}, "
              f"uptime: {system['uptime_seconds']:.2f}s, executed: {executor.tasks_executed}, "
              f"failed: {executor.tasks_failed}, "
              f"peak concurrent tasks here: {manager.module_executor.get_thread_info()['peak_active_threads']}")

        parallel = ParallelPerceptionModule(agent_state, max_workers=3, attention_bandwidth=5, vision_radius=4,
                                            agent_id="isabella", environment=world)
        manager.register_module("parallel_perception", parallel)
        critical = manager.submit_task("parallel_perception", "run", priority=Priority.CRITICAL)
        results = manager.get_result(critical, timeout=30)
        metrics = parallel.get_perception_metrics()
        print(f"ParallelPerception (CRITICAL): {len(results)} results; tasks processed "
              f"{metrics.total_tasks_processed}, average {metrics.average_processing_time * 1000:.1f} ms, "
              f"cache hit rate {metrics.cache_hit_rate:.0%}")

        started = time.monotonic()
        cycle_ids = []
        for _ in range(2):
            cycle_ids += [manager.submit_task("perception", priority=Priority.HIGH),
                          manager.submit_task("planning"), manager.submit_task("retrieval")]
        cycles = manager.wait(cycle_ids, timeout=60)
        elapsed = max(time.monotonic() - started, 1e-6)
        busy = sum((st["ended_at"] or 0) - (st["started_at"] or 0) for st in cycles.values())
        print(f"Two cycles: {len(cycle_ids)} tasks in {elapsed:.2f}s, throughput {len(cycle_ids) / elapsed:.1f} tasks/s, "
              f"CPU efficiency {busy / (elapsed * manager.max_workers):.0%} of {manager.max_workers} slots busy")
        parallel.shutdown()
        perception.perception.shutdown()
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        print("11. Shutting down…")
        manager.shutdown()
        for resource_id in MEMORIES:
            try:
                manager.resource_coordinator.unregister_resource(resource_id)
            except Exception:
                pass
    print("=" * 60)
    print("🎹 Demo complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
