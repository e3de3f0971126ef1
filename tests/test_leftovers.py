"""What issue 16's clean-up changed in behaviour: module metrics read from the cluster,
one rule for agent ids, InvalidArgument as the argument error (SecurityError its alias)."""
import pytest
from support.sample_modules import Echo

from piano_dist import ConcurrentModuleManager, InvalidArgument, SecurityError
from piano_dist.agent_ids import validate_agent_id
from piano_dist.memory.validation import validate_agent_id as memory_rule
from piano_dist.state.paths import validate_agent_id as state_rule


def test_module_metrics_count_the_runs_the_cluster_started(redis_url):
    with ConcurrentModuleManager(max_workers=2) as manager:
        manager.register_module("echo", Echo())
        ids = [manager.submit_task("echo", "add", args=(i, 1)) for i in range(3)]
        for task_id in ids:
            manager.get_result(task_id, timeout=30)
        metrics = manager.get_module_metrics("echo")
        assert (metrics.execution_count, metrics.concurrent_executions) == (3, 0)
        assert manager.module_metrics == {"echo": metrics}
        assert manager.get_module_metrics("nothing") is None


@pytest.mark.parametrize("bad", ["", "   ", "a{b}", "tab\there", "line\n", "x" * 129, 7, None])
def test_one_agent_id_rule_for_state_and_memories(bad):
    assert memory_rule is state_rule is validate_agent_id
    with pytest.raises(InvalidArgument, match="agent id"):
        validate_agent_id(bad)


def test_a_persona_name_is_an_agent_id():
    assert validate_agent_id("Isabella Rodriguez") == "Isabella Rodriguez"


def test_security_error_is_the_argument_error():
    assert SecurityError is InvalidArgument and issubclass(InvalidArgument, ValueError)
    with pytest.raises(SecurityError, match="timeout must be a positive number"):
        ConcurrentModuleManager(max_workers=0, task_timeout=-1)
