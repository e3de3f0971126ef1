"""PIANO_REDIS_WAIT_REPLICAS: submits and outcome batches wait (Redis WAIT, on the
connection that wrote them) until replicas have them, and say so when they do not."""
import logging
import signal

import pytest
from support.failure_procs import Workers
from support.redis_server import RedisServer
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager


@pytest.fixture
def replicated(monkeypatch):
    master = RedisServer().start()
    replica = RedisServer(args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    wait_until(lambda: replica.client().info("replication").get("master_link_status") == "up", timeout=30,
               message="the replica in sync")
    monkeypatch.setenv("PIANO_REDIS_URL", master.url)
    monkeypatch.setenv("PIANO_REDIS_WAIT_REPLICAS", "1")
    monkeypatch.setenv("PIANO_REDIS_WAIT_TIMEOUT_MS", "300")
    yield master, replica
    replica.proc.send_signal(signal.SIGCONT)
    replica.close()
    master.close()


def test_a_submit_and_a_finish_wait_for_the_replica(replicated, caplog):
    master, replica = replicated
    from support.sample_modules import Echo

    manager = ConcurrentModuleManager(max_workers=0, redis_url=master.url)
    try:
        manager.register_module("echo", Echo())
        first = manager.submit_task("echo", "run", args=("a",))
        assert replica.client().exists(f"rq:job:{first}")  # WAIT returned: the replica has it
        assert "replica(s) acknowledged" not in caplog.text
        with Workers(master.url) as workers:
            worker = workers.start(concurrency=1, log_level="WARNING")
            assert manager.get_result(first, timeout=30) is not None
            # A replica that cannot answer: the write is kept, the wait ends at its timeout
            # and says so. "0 of 1" proves the WAIT rode the connection that wrote (WAIT on
            # a connection without writes answers at once with every replica).
            replica.proc.send_signal(signal.SIGSTOP)
            with caplog.at_level(logging.WARNING, logger="piano_dist.redis"):
                second = manager.submit_task("echo", "run", args=("b",))
            assert "submit: 0 of 1 replica(s) acknowledged within 300 ms" in caplog.text
            assert manager.get_result(second, timeout=30) is not None
            wait_until(lambda: "outcome(s): 0 of 1 replica(s) acknowledged" in worker.log(), timeout=10,
                       message="the worker's warning")
            replica.proc.send_signal(signal.SIGCONT)
    finally:
        manager.shutdown()
