"""The event listener (issue 12.17): anyone can PUBLISH on the events channel, so a
malformed message is dropped and every later event still reaches its callbacks."""
from __future__ import annotations

from support.sample_modules import Echo
from support.waiting import wait_until

from piano_dist import ConcurrentModuleManager


def test_malformed_events_do_not_stop_callbacks(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=1, redis_url=redis_url)
    completed = []
    try:
        manager.register_module("echo", Echo())
        manager.add_event_callback("task_completed", lambda task_id, ok: completed.append((task_id, ok)))
        first = manager.submit_task("echo", "add", args=(1, 1))
        wait_until(lambda: (first, True) in completed, timeout=20, message="the first callback")
        for junk in ["[1]", "1", "null", "not json", b"\xff\xfe", '{"e": "finished", "id": 5}',
                     '{"e": "finished", "id": "x", "status": []}', '{"e": ["x"]}', '{"id": "y"}',
                     '{"e": "queued", "id": "z", "module": {"a": 1}}']:
            redis_client.publish("piano:events", junk)
        second = manager.submit_task("echo", "add", args=(2, 2))
        wait_until(lambda: (second, True) in completed, timeout=20, message="a callback after the junk")
        assert manager.client.events._thread.is_alive()
    finally:
        manager.shutdown()
