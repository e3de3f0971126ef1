"""The demo keeps no task records: its report is built from the tasks' "finished" events,
which carry each run's times, worker and model figures (includes/task_common.lua)."""
import json

import pytest
from support.sample_modules import Echo, Thinker
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager, TaskSpec
from piano_dist.core.client import SUBMIT_CHUNK
from piano_dist.core.events import EventBus
from piano_dist.keys import Keys
from piano_dist.demo.journal import RunJournal, ended_status
from piano_dist.demo.workload import STEPS, Workload, agent_ids


def test_a_finished_event_tells_how_a_task_ran_after_its_record_is_gone(redis_url, redis_client):
    events = EventBus(redis_client, Keys())
    journal = RunJournal(events)
    journal.start()
    try:
        with ConcurrentModuleManager(None, max_workers=2) as manager:
            manager.register_module("thinker", Thinker(None))
            manager.register_module("echo", Echo(None))
            ids = ["journal-think", "journal-echo"]
            journal.expect(ids)
            manager.submit_many([TaskSpec("thinker", "run", kwargs={"latency": 0.1}, task_id=ids[0], result_ttl=0),
                                 TaskSpec("echo", "run", args=(1,), task_id=ids[1], result_ttl=0,
                                          dependencies=[ids[0]])])
            assert journal.wait_for_all(timeout=30), journal.snapshot()
        wait_until(lambda: not any(redis_client.exists(f"rq:job:{i}") for i in ids), timeout=5,
                   message="the records to go (a TTL of 0)")
    finally:
        journal.stop()
        events.stop()
    think, echo = (journal.snapshot()[i] for i in ids)
    assert think["status"] == echo["status"] == "completed"
    assert think["module"] == "thinker" and think["worker"]
    assert think["started_at"] <= think["ended_at"] <= echo["started_at"] <= echo["ended_at"]
    assert think["model_calls"] == 2 and 0.1 <= think["model_seconds"] < 0.19  # two calls at once
    assert "model_seconds" not in echo


def test_a_task_ending_with_junk_model_figures_still_ends_and_tells_it(redis_url, redis_client):
    """Figures read back from Redis may be anything: cjson cannot encode inf or nan, so
    the event leaves them out rather than failing the script that ends the task."""
    events = EventBus(redis_client, Keys())
    journal = RunJournal(events)
    journal.start()
    try:
        with ConcurrentModuleManager(None, max_workers=0) as manager:
            manager.register_module("echo", Echo(None))
            ids = ["junk-parent", "junk-child"]
            journal.expect(ids)
            manager.submit_many([TaskSpec("echo", "run", args=(1,), task_id=ids[0]),
                                 TaskSpec("echo", "run", args=(2,), task_id=ids[1], dependencies=[ids[0]])])
            redis_client.hset(f"rq:job:{ids[1]}", mapping={"piano_model_ms": "inf", "piano_model_calls": "nan",
                                                           "started_at": "yesterday"})
            assert manager.client.cancel_many(ids[:1], "test") == ["cancelled"]  # the child: dependency_failed
            assert journal.wait_for_all(timeout=10), journal.snapshot()
    finally:
        journal.stop()
        events.stop()
    child = journal.snapshot()[ids[1]]
    assert child["status"] == "dependency_failed" and child["started_at"] is None and "model_seconds" not in child
    assert child["ended_at"] > 0


def _parsed(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


@pytest.mark.parametrize("raw", [
    b"not json", b"[]", b'{"e": "started", "id": "t1"}', b'{"e": "finished", "id": "other", "status": "completed"}',
    b'{"e": "finished", "id": "t1", "status": "running"}', b'{"e": "finished", "id": ["t1"], "status": "completed"}',
])
def test_the_journal_takes_only_finished_events_of_its_own_tasks(raw):
    assert ended_status(_parsed(raw), {"t1"}) is None


def test_the_journal_keeps_what_is_well_formed_of_an_event_and_drops_the_rest():
    event = {"e": "finished", "id": "t1", "status": "failed", "module": 7, "worker": "w1", "ended_ms": 1.5e12,
             "started_at": "2026-12-06T10:00:00.000000Z", "model_ms": float("nan"), "model_calls": 3}
    _, entry = ended_status(event, {"t1"})
    assert entry["status"] == "failed" and entry["module"] is None and entry["worker"] == "w1"
    assert entry["ended_at"] == 1.5e9 and entry["started_at"] == pytest.approx(1796551200.0)
    assert "model_seconds" not in entry
    event.update(model_ms=250, model_calls=True, ended_ms="soon", started_at=12)
    _, entry = ended_status(event, {"t1"})
    assert entry["model_seconds"] == 0.25 and entry["model_calls"] == 0
    assert entry["ended_at"] is None and entry["started_at"] is None


@pytest.mark.parametrize("agents, ticks", [(3, 2), (250, 5), (3, 150), (7, 99), (1, 250)])
def test_the_demo_submits_each_dependency_in_its_parents_script_or_keeps_the_parents_record(agents, ticks):
    """A task whose record goes when it ends (TTL 0) must have every dependent stored by
    then: each submission of at most SUBMIT_CHUNK tasks is one script, so a dependent in
    the same one is; a parent whose dependent comes in a later one keeps its record."""
    workload = Workload("r", agent_ids(agents), ticks, 0, result_ttl=0, handoff_ttl=3600)
    batches = workload.batches()
    assert all(0 < len(batch) <= SUBMIT_CHUNK for batch in batches)
    assert sum(map(len, batches)) == agents * ticks * len(STEPS)
    where = {spec.task_id: n for n, batch in enumerate(batches) for spec in batch}
    by_id = {spec.task_id: spec for batch in batches for spec in batch}
    handed_off = set()
    for spec in by_id.values():
        for parent in spec.dependencies or ():
            assert where[parent] <= where[spec.task_id]
            if where[parent] < where[spec.task_id]:
                handed_off.add(parent)
    for task_id, spec in by_id.items():
        assert spec.result_ttl == (3600 if task_id in handed_off else 0), task_id
    # Whole agents per submission where they fit: no agent is split that need not be.
    if ticks * len(STEPS) <= SUBMIT_CHUNK:
        assert not handed_off


def test_the_demo_keeps_a_handed_off_record_at_least_as_long_as_asked():
    workload = Workload("r", agent_ids(1), 101, 0, result_ttl=7200, handoff_ttl=3600)
    assert {spec.result_ttl for spec in workload.specs()} == {7200}
    workload = Workload("r", agent_ids(1), 101, 0, result_ttl=60)
    assert {spec.result_ttl for spec in workload.specs()} == {60, 3600}  # the submission takes seconds


def test_junk_on_the_channel_does_not_end_the_journal(redis_url, redis_client):
    """Anyone who can PUBLISH can send anything, naming the run's (predictable) task ids."""
    events = EventBus(redis_client, Keys())
    journal = RunJournal(events, ["t1", "t2", "t3"])
    journal.start()
    try:
        for junk in ['{"e": "finished", "id": "t1", "status": [1]}',
                     '{"e": "finished", "id": "t1", "status": "completed", "started_at": "\\ud800"}',
                     '{"e": "finished", "id": "t2", "status": "failed", "ended_ms": 1' + "0" * 400 + '}',
                     b"\xff\xfe", "[[[[", '{"e": "finished"}']:
            redis_client.publish("piano:events", junk)
        redis_client.publish("piano:events", json.dumps({"e": "finished", "id": "t3", "status": "completed",
                                                         "ended_ms": 2000}))  # read after all of the junk
        assert journal.wait_for_all(timeout=10), journal.snapshot()
    finally:
        journal.stop()
        events.stop()
    assert journal.snapshot()["t3"]["ended_at"] == 2.0
    assert journal.snapshot()["t1"]["started_at"] is None  # not a time
    assert journal.snapshot()["t2"]["status"] == "failed" and journal.snapshot()["t2"]["ended_at"] is None
