"""Timeouts with thread isolation: the task ends timed_out at its deadline, its slot is
free for the next task while the thread runs on, and the late result is discarded.

(Process isolation, which would also stop the thread's work, is not built yet.)
"""
from support.failure_modules import RunLog
from support.failure_procs import Workers
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager


def test_timed_out_task_frees_its_slot_and_its_late_result_is_discarded(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    manager.register_module("log", RunLog())
    try:
        with Workers(redis_url) as workers:
            w = workers.start(concurrency=1, log_level="INFO")
            slow = manager.submit_task("log", "slow_then_mark", args=("slow", 5.0), timeout=0.5)
            child = manager.submit_task("log", "run", args=("child",), dependencies=[slow])
            tolerant = manager.submit_task("log", "run", args=("tolerant",), dependencies=[slow],
                                           allow_failure=[slow])
            wait_until(lambda: manager.get_task_status(slow)["status"] != "queued", timeout=20,
                       message="the slow task to start")
            nxt = manager.submit_task("log", "run", args=("next",))

            # Ends timed_out at its deadline, long before its 5 s sleep is over.
            st = manager.wait([slow], timeout=3.5)[slow]
            assert st["status"] == "timed_out", st
            assert "timeout of 0.5s" in st["error"] and "result" not in st
            c = manager.get_task_status(child)
            assert c["status"] == "dependency_failed" and slow in c["error"] and "timed_out" in c["error"]

            # The only slot runs the next task (and the tolerant child) while the thread still sleeps.
            done = manager.wait([nxt, tolerant], timeout=3.5)
            assert {s["status"] for s in done.values()} == {"completed"}
            assert redis_client.llen("test:returned") == 0, "the timed-out thread had already returned"
            assert {d["worker"] for d in done.values()} == {w.name}

            # The thread returns; its result is refused and the task stays timed_out.
            wait_until(lambda: redis_client.llen("test:returned") == 1, timeout=10,
                       message="the timed-out thread to return")
            wait_until(lambda: f"late result of timed-out task {slow} discarded" in w.log(), timeout=10,
                       message="the worker to report the late result discarded")
            after = manager.get_task_status(slow)
            assert after["status"] == "timed_out" and "result" not in after and after["attempts"] == 1
            assert redis_client.hget(f"rq:job:{slow}", "piano_result") is None
            assert manager.get_task_status(child)["status"] == "dependency_failed"
            counts = {k.decode(): int(v) for k, v in redis_client.hgetall("piano:stats").items()}
            assert counts["timed_out"] == 1 and counts["completed"] == 2 and counts["dependency_failed"] == 1
            assert counts["backlog"] == 0 and redis_client.zcard("piano:running") == 0
    finally:
        manager.shutdown()
