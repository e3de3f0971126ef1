"""fan_out: a task's sub-calls run at once on one shared pool, in the task's context,
and a batch always completes, even nested, even with every pool thread busy."""
import threading

import pytest

from piano_dist.core import fanout
from piano_dist.core.context import TaskContext, current_task, note_model_call, reset_current_task, set_current_task
from piano_dist.core.fanout import fan_out


def test_items_run_at_once_and_results_keep_their_order():
    barrier = threading.Barrier(4, timeout=10)  # only passes if all four wait together

    def work(i):
        barrier.wait()
        return i * i

    assert fan_out(work, range(4)) == [0, 1, 4, 9]


def test_sub_calls_see_the_running_task_and_their_model_time_counts_for_it():
    ctx = TaskContext("t1", "m", "run", 1, "w", None)
    token = set_current_task(ctx)
    try:
        seen = fan_out(lambda i: (current_task().task_id, note_model_call(i, i + 1.0))[0], [0.0, 0.5, 5.0])
    finally:
        reset_current_task(token)
    assert seen == ["t1", "t1", "t1"]
    # Spans [0, 1], [0.5, 1.5] and [5, 6]: the task waited on the model 2.5 s, not 3.
    assert len(ctx.model_spans) == 3 and ctx.model_time() == pytest.approx(2.5)


def test_the_first_failure_is_raised_after_every_item_ended():
    ended = []

    def work(i):
        if i in (1, 2):
            raise ValueError(f"item {i}")
        ended.append(i)
        return i

    with pytest.raises(ValueError, match="item 1"):
        fan_out(work, range(5))
    assert sorted(ended) == [0, 3, 4]


def test_a_batch_completes_when_the_pool_has_no_thread_to_spare(monkeypatch):
    # A pool of no threads at all: the caller runs its own items, nested batches included.
    monkeypatch.setattr(fanout, "_pool", fanout._Pool())
    monkeypatch.setattr(fanout, "MAX_THREADS", 0)
    assert fan_out(lambda i: sum(fan_out(lambda j: i * j, range(3))), range(4), max_parallel=4) == [0, 3, 6, 9]
