"""Children submitted after their parents ended, and callbacks of cascaded descendants."""
import threading

from support.failure_modules import DagNode
from support.failure_procs import Workers
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager


def test_children_of_already_finished_parents_and_cascade_callbacks(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    manager.register_module("dag", DagNode())
    seen: dict[str, list] = {}
    lock = threading.Lock()

    def recorder():
        def callback(status):
            with lock:
                seen.setdefault(status["task_id"], []).append(status["status"])
        return callback

    try:
        with Workers(redis_url) as workers:
            workers.start(concurrency=2, log_level="WARNING")
            good = manager.submit_task("dag", "ok", args=("good",))
            bad = manager.submit_task("dag", "fail", args=("bad",))
            manager.wait([good, bad], timeout=20)

            # Parents already ended: decided at submit, atomically.
            after_good = manager.submit_task("dag", "ok", args=("a",), dependencies=[good])
            after_bad = manager.submit_task("dag", "ok", args=("b",), dependencies=[good, bad],
                                            callback=recorder())
            assert manager.get_task_status(after_bad)["status"] == "dependency_failed"
            assert bad in manager.get_task_status(after_bad)["error"]
            tolerant = manager.submit_task("dag", "ok", args=("t",), dependencies=[bad], allow_failure=[bad])
            below_failed = manager.submit_task("dag", "ok", args=("c",), dependencies=[after_bad],
                                               callback=recorder())
            assert manager.get_task_status(below_failed)["status"] == "dependency_failed"

            # A live cascade: every descendant's callback fires once, with its final status.
            gate = manager.submit_task("dag", "nap", args=("gate", 0.5))
            root = manager.submit_task("dag", "fail", args=("root",), dependencies=[gate], callback=recorder())
            chain = [root]
            for i in range(5):
                chain.append(manager.submit_task("dag", "ok", args=(f"d{i}",), dependencies=[chain[-1]],
                                                 callback=recorder()))
            final = manager.wait([after_good, tolerant, *chain], timeout=20)
            wait_until(lambda: all(t in seen for t in [after_bad, below_failed, *chain]), timeout=10,
                       message="every callback")
    finally:
        manager.shutdown()

    assert final[after_good]["status"] == "completed"
    assert final[tolerant]["status"] == "completed"
    assert final[root]["status"] == "failed"
    assert all(final[t]["status"] == "dependency_failed" and root in final[t]["error"] for t in chain[1:])
    assert seen[after_bad] == ["dependency_failed"] and seen[below_failed] == ["dependency_failed"]
    assert seen[root] == ["failed"]
    assert all(seen[t] == ["dependency_failed"] for t in chain[1:]), seen
