"""A small simulation written against the original Concurrent Module Framework's API.

It is kept with the original's import lines on purpose: tests/test_dropin_migration.py
rewrites only those lines to piano_dist and runs it. Everything else is as a user of the
original would write it: plain module classes (no base class), live objects passed to
tasks, a manager and coordinators built anew each round against the same store, a
standalone TaskScheduler for tasks nobody registered, and the executor's direct call.
"""
import time

from concurrent_module_manager import ConcurrentModuleManager, ModuleTask, Priority
from module_executor import ModuleExecutor
from resource_coordinator import AccessMode, ResourceCoordinator, ResourceType
from state_coordinator import StateChangeType, StateCoordinator, SyncPolicy
from task_scheduler import SchedulingPolicy, TaskScheduler


class Villager:
    def __init__(self, name):
        self.name = name
        self.curr_tile = [3, 4]
        self.act_description = "idle"
        self.mood = {"energy": 5}


class Perceiver:
    def __init__(self, agent_state=None):
        self.agent_state = agent_state
        self.seen = []

    def run(self, radius=2):
        self.seen.append(radius)
        return f"saw {radius} tiles"


class Planner:
    def __init__(self, agent_state=None):
        self.agent_state = agent_state
        self.goals = []

    def plan(self, coordinator, goal):
        with coordinator.acquire_context("plans", AccessMode.WRITE, "planner") as plans:
            plans.append(goal)
        self.goals.append(goal)
        return len(plans)

    def on_state_change(self, changes):
        pass


def wait_idle(manager, seconds=20.0):
    deadline = time.time() + seconds
    while manager.active_tasks and time.time() < deadline:
        time.sleep(0.05)


def main():
    villager = Villager("isabella")
    plans = []

    # Three rounds, each with new objects, as a simulation restarted between steps.
    for round_no in range(3):
        manager = ConcurrentModuleManager(agent_state=villager, max_workers=2, max_queue_size=20)
        perceiver, planner = Perceiver(villager), Planner(villager)
        manager.register_module("perception", perceiver)
        manager.register_module("planning", planner)
        manager.resource_coordinator.register_resource("plans", plans, ResourceType.AGENT_STATE)
        seen = manager.submit_task("perception", "run", kwargs={"radius": round_no + 1}, priority=Priority.HIGH)
        manager.submit_task("planning", "plan", args=(manager.resource_coordinator, f"goal-{round_no}"),
                            dependencies={seen})
        wait_idle(manager)
        status = manager.get_system_status()
        print(f"round {round_no}: perceived {perceiver.seen}, planned {planner.goals}, "
              f"modules {status['registered_modules']}, active {len(manager.active_tasks)}")
        manager.shutdown()
    print(f"plans: {plans}")

    # A coordinator of its own, twice over the same resource.
    for _ in range(2):
        resources = ResourceCoordinator(max_concurrent_locks=5, default_timeout=2.0)
        resources.register_resource("plans", plans, ResourceType.AGENT_STATE)
        lock = resources.acquire_resource("plans", AccessMode.READ, "reader")
        print(f"locks held: {len(resources.active_locks)}, type {resources.resource_types['plans'].value}")
        resources.release_resource(lock)
        resources.shutdown()

    # Agent state: repeated coordinators, a subscription, a transaction, a snapshot.
    for attempt in range(2):
        state = StateCoordinator(agent_state=villager, sync_policy=SyncPolicy.IMMEDIATE)
        state.register_module("planning", Planner(villager))
        state.subscribe_to_path("planning", "act_description")
        state.propose_change("planning", "act_description", f"walking to the cafe ({attempt})")
        state.begin_transaction(f"mood-{attempt}")
        state.propose_change("planning", "mood", {"energy": 4 - attempt}, StateChangeType.UPDATE)
        state.commit_transaction(f"mood-{attempt}")
        villager.curr_tile = [5, 5 + attempt]
        state.create_snapshot(f"step-{attempt}")
        villager.curr_tile = [0, 0]
        state.restore_snapshot(f"step-{attempt}")
        print(f"state {attempt}: {villager.act_description}, mood {villager.mood}, tile {villager.curr_tile}, "
              f"subscribers {sorted(state.path_subscribers['act_description'])}, "
              f"snapshot kept {f'step-{attempt}' in state.state_snapshots}")
        state.shutdown()

    # A scheduler used on its own, for tasks of modules nobody registered.
    scheduler = TaskScheduler(scheduling_policy=SchedulingPolicy.PRIORITY_FIRST, max_pending_tasks=10)
    scheduler.schedule_task(ModuleTask("reflect", "reflection", "run", priority=Priority.LOW))
    scheduler.schedule_task(ModuleTask("react", "reaction", "run", priority=Priority.CRITICAL))
    scheduler.schedule_task(ModuleTask("replan", "planning", "run"), dependencies={"react"})
    order = []
    while True:
        task = scheduler.get_next_task()
        if task is None:
            break
        order.append(task.task_id)
        scheduler.task_completed(task.task_id)
    metrics = scheduler.get_scheduling_metrics()
    print(f"scheduled order: {order}, total scheduled {metrics.total_scheduled}")
    scheduler.shutdown()

    # The executor's direct call.
    executor = ModuleExecutor(max_workers=2)
    future = executor.execute_task(ModuleTask("look", "perception", "run", kwargs={"radius": 9}), Perceiver())
    print(f"direct: {future.result(timeout=5)}")
    executor.shutdown()


if __name__ == "__main__":
    main()
