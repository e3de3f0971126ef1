"""The enhanced modules as tasks on a worker process: rebuilt there from their JSON
registration config and RedisAgentState, returning JSON, sharing Redis state."""
from datetime import datetime

from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager, Priority
from piano_dist.enhanced_modules import (ConcurrentPlanningModule, DistributedReflectionModule,
                                         MemoryRetrievalModule, ParallelPerceptionModule)
from piano_dist.memory import AssociativeMemory
from piano_dist.state import RedisAgentState
from piano_dist.world import GridWorld


def test_modules_run_as_tasks_on_a_worker(redis_url, redis_client):
    world = GridWorld.create("town", 12, 12, seed=1, n_objects=6, connection=redis_client)
    world.place_agent("alice", 5, 5)
    world.place_agent("bob", 6, 5, "baking bread")
    world.add_event(6, 5, "bob", "chat with", "alice")
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url, agent_id="alice")
    perception = ParallelPerceptionModule(None, agent_id="alice", world="town", store_percepts=True,
                                          connection=redis_client)
    local_results = perception.run()  # fills the shared cache the worker will hit
    planning = ConcurrentPlanningModule(None, agent_id="alice", llm="fake", connection=redis_client)
    planning.add_goal("bake bread with bob", priority=0.8)
    reflection = DistributedReflectionModule(None, importance_threshold=5, agent_id="alice", llm="fake",
                                             connection=redis_client)
    retrieval = MemoryRetrievalModule(None, agent_id="alice", connection=redis_client)
    for name, module in (("perception", perception), ("planning", planning), ("reflection", reflection),
                         ("retrieval", retrieval)):
        manager.register_module(name, module, module.registration_config)
    worker = WorkerProcess(redis_url, concurrency=4)
    try:
        seen = manager.submit_task("perception", "run", priority=Priority.HIGH)
        planned = manager.submit_task("planning", "run", dependencies=[seen])
        reflected = manager.submit_task("reflection", "run", dependencies=[seen])
        recalled = manager.submit_task("retrieval", "run", kwargs={"focal_points": ["bob baking bread"]},
                                       dependencies=[reflected])
        metrics = manager.submit_task("perception", "get_perception_metrics", dependencies=[seen])

        remote_results = manager.get_result(seen, timeout=30)
        assert [r["sensor_type"] for r in remote_results] == [r.sensor_type for r in local_results]
        assert all(r["metadata"]["cached"] for r in remote_results)  # same world, other process: hits
        worker_metrics = manager.get_result(metrics, timeout=30)  # the worker's own instance
        assert worker_metrics["cache_misses"] == 0 and worker_metrics["cache_hits"] >= len(remote_results)

        plan = manager.get_result(planned, timeout=30)
        assert RedisAgentState("alice", connection=redis_client).act_description == plan["decision"]

        reflection_outcome = manager.get_result(reflected, timeout=30)
        assert reflection_outcome["reflected"] is True
        memory = AssociativeMemory(agent_id="alice", connection=redis_client)
        assert len(memory.seq_thought) == len(reflection_outcome["thoughts"]) >= 1

        recalled_outcome = manager.get_result(recalled, timeout=30)
        hits = recalled_outcome["results"]["bob baking bread"]
        assert hits and hits[0]["description"] and datetime.fromisoformat(hits[0]["created"])
        assert int(redis_client.get("piano:llm:calls")) > 0 and int(redis_client.get("piano:llm:in_flight")) == 0
    finally:
        worker.stop()
        manager.shutdown()
        perception.shutdown()
