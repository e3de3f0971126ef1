"""Retries: a failing task is run again up to `retries` times, then ends failed; a task
that fails once and then succeeds ends completed. Dependents wait for the final outcome."""
from support.failure_modules import Flaky
from support.failure_procs import Workers
from support.sample_modules import Failer

from piano_dist import ConcurrentModuleManager


def test_retries(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    manager.register_module("failer", Failer())
    manager.register_module("flaky", Flaky())
    try:
        always = manager.submit_task("failer", "run", args=("always broken",), retries=2)
        always_child = manager.submit_task("flaky", "run", args=("test:never",), kwargs={"failures": 0},
                                           dependencies=[always])
        once = manager.submit_task("flaky", "run", args=("test:once",), retries=2)
        once_child = manager.submit_task("flaky", "run", args=("test:once_child",), kwargs={"failures": 0},
                                         dependencies=[once])
        delayed = manager.submit_task("flaky", "run", args=("test:delayed",), retries=1, retry_delay=0.3)
        no_retry = manager.submit_task("flaky", "run", args=("test:no_retry",))
        with Workers(redis_url) as workers:
            workers.start(concurrency=2, log_level="WARNING")
            final = manager.wait([always, always_child, once, once_child, delayed, no_retry], timeout=30)
    finally:
        manager.shutdown()

    assert final[always]["status"] == "failed"
    assert final[always]["attempts"] == 3 and "always broken" in final[always]["error"]
    assert final[always_child]["status"] == "dependency_failed" and always in final[always_child]["error"]
    assert redis_client.get("test:never") is None

    assert final[once]["status"] == "completed", final[once]
    assert final[once]["attempts"] == 2 and final[once]["result"] == 2
    assert int(redis_client.get("test:once")) == 2
    assert final[once_child]["status"] == "completed"

    assert final[delayed]["status"] == "completed" and final[delayed]["attempts"] == 2
    assert final[no_retry]["status"] == "failed" and final[no_retry]["attempts"] == 1
    assert "flaky failure on run 1" in final[no_retry]["error"]

    counts = {k.decode(): int(v) for k, v in redis_client.hgetall("piano:stats").items()}
    assert counts["retried"] == 2 + 1 + 1
    assert counts["failed"] == 2 and counts["completed"] == 3 and counts["backlog"] == 0
