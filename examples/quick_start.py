"""The seed's Quick Start ("Basic Usage"), with only the import lines changed.

Run it with no Redis configured and piano-dist starts its embedded Redis in ./.piano.
"""
from piano_dist import ConcurrentModuleManager, Priority
from piano_dist import BaseModule


class AgentState:
    """Stands in for `your_agent_state`: any object your modules share."""

    def __init__(self, name):
        self.name = name
        self.emotional_state = {"happiness": 0.5}


your_agent_state = agent_state = AgentState("Isabella Rodriguez")

# --- the seed's Basic Usage, as written ---------------------------------------------
# Initialize the concurrent framework
manager = ConcurrentModuleManager(
    agent_state=your_agent_state,
    max_workers=4,
    max_queue_size=20
)

# Register your modules
class MyModule(BaseModule):
    def run(self):
        return "Module executed successfully"

my_module = MyModule(agent_state)
manager.register_module("my_module", my_module)

# Submit concurrent tasks
task_id = manager.submit_task(
    module_name="my_module",
    method_name="run",
    priority=Priority.HIGH
)

# Check task status
status = manager.get_task_status(task_id)
# --- end of the seed's code -----------------------------------------------------------

print(f"submitted {task_id}: {status['status']}")
result = manager.get_result(task_id, timeout=30)
final = manager.get_task_status(task_id)
print(f"{task_id}: {final['status']} on {final['worker']} -> {result!r}")
system = manager.get_system_status()
print(f"completed tasks: {system['completed_tasks']}, workers: {len(system['workers'])}, "
      f"slots: {system['total_slots']}")
manager.shutdown()
