"""The task-script gateway (piano_dist/core/task_scripts.py): the only Python that builds
the task scripts' KEYS/ARGV and reads their replies, in step with each script's header;
and the one translator of the fenced-write reply."""
import json
import re
from pathlib import Path

import pytest
import redis

import piano_dist
from piano_dist.config import Timing
from piano_dist.core.task_scripts import FinishReply, Refusal, RunOutcome, TaskScripts
from piano_dist.errors import FencedWriteRejected, InvalidArgument, QueueFullError, UnknownTaskError
from piano_dist.keys import Keys
from piano_dist.resources.fencing import raise_if_fenced
from piano_dist.scripts import lua_source

PACKAGE = Path(piano_dist.__file__).parent
GATEWAY = PACKAGE / "core" / "task_scripts.py"
TASK_SCRIPTS = sorted(p.stem for p in (PACKAGE / "lua").glob("task_*.lua")) + ["module_resume"]


def _python_sources():
    roots = [PACKAGE, PACKAGE.parent / "cli", PACKAGE.parent / "workers"]
    return [p for root in roots for p in root.rglob("*.py")]


def test_only_the_gateway_runs_the_task_scripts():
    calls = re.compile(r"\.(%s)\(" % "|".join(TASK_SCRIPTS))
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{n}" for p in _python_sources() if p != GATEWAY
                 for n, line in enumerate(p.read_text().splitlines(), 1) if calls.search(line)]
    assert offenders == []


def test_only_the_fencing_module_reads_the_fenced_reply():
    fencing = PACKAGE / "resources" / "fencing.py"
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in _python_sources()
                 if p != fencing and re.search(r"""startswith\(["']FENCED""", p.read_text())]
    assert offenders == []


def _header_argv(name: str) -> int:
    """The highest ARGV index the script's header names."""
    header = lua_source(name).split("]]", 1)[0]
    return max(int(n) for n in re.findall(r"ARGV\[(\d+)", header))


class _Recorder:
    """Stands in for the ScriptSet: records each call's KEYS and ARGV."""

    def __init__(self):
        self.calls = {}

    def __getattr__(self, name):
        def call(keys=(), args=(), client=None):
            self.calls[name] = (list(keys), list(args))
            return {"task_claim": [], "task_renew": [0], "module_resume": 0, "task_backlog": 0,
                    "task_release": b"queued", "task_cancel": b"cancelled"}.get(name, [b"completed", 0])
        return call


def test_the_gateway_builds_the_argv_each_header_names():
    tasks = TaskScripts(redis.Redis(), Keys("p"), Timing())  # no call reaches a Redis
    tasks.scripts = recorder = _Recorder()
    tasks.claim(["rq:queue:p.normal"], "w", 1000, 4, "{}", 100, any_module=True)
    tasks.finish(RunOutcome("t1", "w", 1, "completed", "1", 5))
    tasks.release("t1", "w", 1, "why", park=True)
    tasks.renew("w", 1000, [("t1", 1)])
    tasks.sweep()
    tasks.cancel("t1", "why")
    tasks.resume_module("m")
    tasks.recount_backlog()
    argv = tasks.submit_args([], 0, "s")
    assert argv[:5] == ["p", 0, Timing().result_ttl, "s", 35] and argv[6:] == ["[]", 0]  # ARGV[1-5], [7-8]
    assert json.loads(argv[5])[-2:] == ["piano_submission", "s"]
    for name, (keys, args) in recorder.calls.items():
        assert args[0] == "p", name
        if name == "task_renew":
            assert len(args) == 3 + 2  # ARGV[4…] pairs
        elif name == "module_resume":
            assert len(args) == 7 and len(keys) == 5
        else:
            assert len(args) == _header_argv(name), name
    assert len(recorder.calls) == len(TASK_SCRIPTS) - 1  # every script but task_submit_many


def test_replies_and_refusals_decode_to_the_right_errors():
    assert FinishReply.decode([b"refused", b"running"]).refused
    assert FinishReply.decode([b"completed", 2]) == ("completed", "2")
    assert isinstance(Refusal.decode(b"QUEUE_FULL 7").error("t", 5), QueueFullError)
    assert "7 tasks waiting, max_queue_size is 5" in str(Refusal.decode(b"QUEUE_FULL 7").error("t", 5))
    assert isinstance(Refusal.decode(b"UNKNOWN_DEPENDENCY p1").error("t", 0), UnknownTaskError)
    exists = Refusal.decode(b"TASK_EXISTS t").error("t", 0)
    assert isinstance(exists, InvalidArgument) and isinstance(exists, piano_dist.SecurityError)


def test_the_fenced_reply_becomes_fenced_write_rejected_and_nothing_else_does():
    with pytest.raises(FencedWriteRejected, match="write to memory 'm' refused.*on 'm'.*FENCED k latest=3 token=2"):
        raise_if_fenced(redis.ResponseError("FENCED k latest=3 token=2"), "write to memory 'm'", "m")
    raise_if_fenced(redis.ResponseError("OCCUPIED 1,1 bob"))  # not fenced: left to the caller


def test_a_task_through_the_gateway(redis_client):
    """Claim, renew, finish and a refused repeat, on a real Redis."""
    from piano_dist import ConcurrentModuleManager
    from support.sample_modules import Echo

    manager = ConcurrentModuleManager(max_workers=0, connection=redis_client, max_queue_size=0)
    try:
        manager.register_module("echo", Echo())
        task_id = manager.submit_task("echo", "run", args=("hi",))
        tasks = manager.client.tasks
        [row] = tasks.claim([tasks.keys.rq_queue(q) for q in tasks.keys.queue_names], "w1", 5000, 1, "{}", 10)
        assert (row.task_id, row.module, row.method, row.attempt) == (task_id, "echo", "run", 1)
        assert tasks.renew("w1", 5000, [(task_id, 1), (task_id, 2)]) == [0, -1]
        outcome = RunOutcome(task_id, "w1", 1, "completed", '"hi"', 3)
        assert FinishReply.decode(tasks.finish(outcome)) == ("completed", "0")
        assert FinishReply.decode(tasks.finish(outcome)) == ("refused", "completed")
        assert manager.client.get_status(task_id)["result"] == "hi"
    finally:
        manager.shutdown()
