"""What a finished task records for reports: its model time (overlapping calls once),
its group's progress in one counter, and no return value when none is wanted."""
import pytest

from piano_dist import ConcurrentModuleManager, TaskSpec
from piano_dist.demo.oracle import model_oracle
from support.sample_modules import Echo, Thinker


def test_a_task_records_its_model_time_and_calls(redis_url):
    with ConcurrentModuleManager(None, max_workers=2) as manager:
        manager.register_module("thinker", Thinker(None))
        task = manager.submit_task("thinker", "run", kwargs={"latency": 0.2})
        status = manager.wait(task, timeout=30)[task]
    assert status["status"] == "completed" and status["model_calls"] == 2
    # Two 0.2 s calls at once: the task waited on the model about 0.2 s, not 0.4 s.
    assert 0.2 <= status["model_seconds"] < 0.39


def test_a_group_counts_its_ended_tasks_and_results_can_be_left_unkept(redis_url, redis_client):
    with ConcurrentModuleManager(None, max_workers=2) as manager:
        manager.register_module("echo", Echo(None))
        specs = [TaskSpec("echo", "run", args=(i,), group="g1", keep_result=False) for i in range(3)]
        specs.append(TaskSpec("echo", "add", args=(1, "x"), group="g1"))
        ids = manager.submit_many(specs)
        statuses = manager.wait(ids, timeout=30)
        assert manager.client.group_progress("g1") == {"completed": 3, "failed": 1}
    assert all(statuses[i]["status"] == "completed" and statuses[i]["result"] is None for i in ids[:3])
    assert not any(redis_client.exists(f"rq:results:{i}") for i in ids[:3])
    assert "TypeError" in statuses[ids[3]]["error"]


VALUE_SIZE = 200_000


def bytes_in_for_one_task(manager, redis_client, keep: bool) -> int:
    """What Redis received while one task returning a VALUE_SIZE-character string was
    submitted, run and recorded."""
    before = redis_client.info("stats")["total_net_input_bytes"]
    task = manager.submit_many([TaskSpec("echo", "repeat", args=("x", VALUE_SIZE), keep_result=keep)])[0]
    status = manager.wait(task, timeout=30)[task]
    assert status["status"] == "completed"
    assert (status["result"] is not None) == keep
    return redis_client.info("stats")["total_net_input_bytes"] - before


def test_a_value_nobody_keeps_is_not_sent_to_redis(redis_url, redis_client):
    """A task submitted with keep_result=False completes without its value crossing the
    wire: a module's large return value costs the worker and Redis nothing to drop."""
    with ConcurrentModuleManager(None, max_workers=2) as manager:
        manager.register_module("echo", Echo(None))
        bytes_in_for_one_task(manager, redis_client, True)  # the scripts are loaded now
        kept = bytes_in_for_one_task(manager, redis_client, True)
        unkept = bytes_in_for_one_task(manager, redis_client, False)
    # Kept: the value and RQ's base64 copy of it; not kept: neither.
    assert kept > 2 * VALUE_SIZE and unkept < VALUE_SIZE // 4, (kept, unkept)


def test_a_finish_that_redis_refused_for_a_forgotten_script_is_sent_once_more(redis_url, redis_client):
    """After Redis forgets its scripts (a restart), the batch's EVALSHA is refused; the
    finisher loads the script and sends the outcome once more, not twice more."""
    with ConcurrentModuleManager(None, max_workers=2) as manager:
        manager.register_module("echo", Echo(None))
        bytes_in_for_one_task(manager, redis_client, True)
        steady = bytes_in_for_one_task(manager, redis_client, True)
        redis_client.script_flush()
        after_flush = bytes_in_for_one_task(manager, redis_client, True)
    assert after_flush < 2.5 * steady, (after_flush, steady)


def test_a_group_name_is_checked_before_anything_is_stored(redis_url, redis_client):
    with ConcurrentModuleManager(None, max_workers=0) as manager:
        manager.register_module("echo", Echo(None))
        before = redis_client.dbsize()
        with pytest.raises(ValueError, match="group"):
            manager.submit_many([TaskSpec("echo", group="bad group!")])
        assert redis_client.dbsize() == before


class _Spec:
    def __init__(self, task_id, dependencies=None):
        self.task_id, self.dependencies = task_id, dependencies


def test_the_oracle_is_the_longer_of_the_model_chain_and_the_model_work_over_the_slots():
    specs = [_Spec("a"), _Spec("b", ["a"]), _Spec("c", ["a"]), _Spec("d", ["b", "c"])]
    statuses = {"a": {"model_seconds": 1.0, "model_calls": 1}, "b": {"model_seconds": 2.0, "model_calls": 2},
                "c": {"model_seconds": 0.5, "model_calls": 1}, "d": {}}
    chain_bound = model_oracle(specs, statuses, slots=4)
    assert chain_bound == {"oracle_seconds": 3.0, "chain_seconds": 3.0, "work_seconds": 0.875,
                           "model_seconds": 3.5, "model_calls": 4}
    assert model_oracle(specs, statuses, slots=1)["oracle_seconds"] == 3.5  # the work bound


def test_a_finished_task_keeps_its_outcome_not_its_waiting_fields(redis_url, redis_client):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    with ConcurrentModuleManager(None, max_workers=1) as manager:
        manager.register_module("echo", Echo(None))
        parent = manager.submit_task("echo", "run", args=(1,))
        child = manager.submit_task("echo", "run", args=(2,), dependencies={parent})
        manager.wait([parent, child], timeout=30)
    record = {k.decode() for k in redis_client.hkeys(f"rq:job:{parent}")}
    assert not record & {"piano_payload", "piano_enq_ms", "piano_retries_left", "piano_retry_delay",
                         "piano_max_attempts", "last_heartbeat", "meta", "success_callback_name"}
    assert {"piano_status", "started_at", "ended_at", "worker_name", "data"} <= record
    # The parent's set of children is gone once they are settled.
    assert not redis_client.exists(manager.keys.task_children(parent))
    # RQ still reads the task (its data stored raw when shorter than compressed).
    job = Job.fetch(child, connection=redis_client, serializer=JSONSerializer)
    assert job.func_name == "piano_dist.run_module_task" and job.args == ["echo", "run", 2]


def test_the_switch_interval_can_be_set_for_workers(monkeypatch):
    import sys

    from piano_dist.workers.piano_worker import set_switch_interval

    before = sys.getswitchinterval()
    try:
        monkeypatch.delenv("PIANO_SWITCH_INTERVAL", raising=False)
        assert set_switch_interval() == before == sys.getswitchinterval()  # Python's own, unless asked
        monkeypatch.setenv("PIANO_SWITCH_INTERVAL", "0.0005")
        assert set_switch_interval() == 0.0005
        monkeypatch.setenv("PIANO_SWITCH_INTERVAL", "fast")
        with pytest.raises(ValueError, match="PIANO_SWITCH_INTERVAL"):
            set_switch_interval()
    finally:
        sys.setswitchinterval(before)


def test_a_tasks_model_calls_are_accounted_together_when_it_ends(redis_url, redis_client):
    from piano_dist.llm.accounting import Accounting
    from piano_dist.keys import Keys

    def hincrbys():
        return redis_client.info("commandstats").get("cmdstat_hincrby", {}).get("calls", 0)

    with ConcurrentModuleManager(None, max_workers=1) as manager:
        manager.register_module("thinker", Thinker(None))
        before = hincrbys()
        task = manager.submit_task("thinker", "run", kwargs={"latency": 0.01})
        assert manager.wait(task, timeout=30)[task]["status"] == "completed"
        spent = hincrbys() - before
    summary = Accounting(redis_client, Keys()).summary()
    assert summary["modules"]["thinker"]["calls"] == 2 and summary["total"]["calls"] == 2
    # Both calls' counters went to each of the four hashes in one set of increments, not
    # one set per call (37 HINCRBYs here in all, transitions included, against 57).
    assert spent <= 45
