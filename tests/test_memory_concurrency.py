"""Bounds and indexes hold with 8 writer processes adding at once (real processes, private Redis)."""
import multiprocessing
import threading

import pytest
import redis

from piano_dist.memory import CircularBuffer, EpisodicMemory

WRITERS = 8
ADDS = 200


def _fill_buffer(url, writer):
    buf = CircularBuffer(max_size=50, agent_id="crowd", redis_url=url)
    ids = [buf.add_memory(f"w{writer}-{i}", metadata={"writer": writer, "i": i})["id"] for i in range(ADDS)]
    buf.connection.rpush("test:issued", *ids)


def _fill_episodes(url, writer):
    mem = EpisodicMemory(max_episodes=20, max_events_per_episode=10, agent_id="crowd", redis_url=url)
    ids = [mem.add_event(f"w{writer}-{i}", "conversation", participants=[f"p{writer}"], location=f"room{writer}")
           for i in range(ADDS)]
    mem.connection.rpush("test:issued", *ids)


def _run_writers(url, target, watch):
    """Start the writers and, while they run, record the largest size ever observed."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=(url, w)) for w in range(WRITERS)]
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], watch())

    sampler = threading.Thread(target=sample)
    sampler.start()
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    stop.set()
    sampler.join()
    assert [p.exitcode for p in procs] == [0] * WRITERS
    return peak[0]


@pytest.mark.slow
def test_circular_buffer_bound_and_indexes_hold_under_8_writer_processes(redis_url, redis_client):
    buf = CircularBuffer(max_size=50, agent_id="crowd")
    peak = _run_writers(redis_url, _fill_buffer, lambda: redis_client.zcard(buf._key("order")))
    assert peak <= 50 and len(buf) == 50
    issued = [i.decode() for i in redis_client.lrange("test:issued", 0, -1)]
    assert len(set(issued)) == WRITERS * ADDS  # every add got its own id: none lost or merged
    records = {k.decode() for k in redis_client.hkeys(buf._key("records"))}
    assert records == set(buf.ids())  # records and order index agree
    # FIFO eviction: the survivors are exactly the 50 most recently added
    assert sorted(int(i[4:]) for i in records) == list(range(WRITERS * ADDS - 49, WRITERS * ADDS + 1))
    per_writer = {}
    for m in reversed(buf.get_recent_memories(50)):
        per_writer.setdefault(m["metadata"]["writer"], []).append(m["metadata"]["i"])
    assert all(v == sorted(v) for v in per_writer.values())


@pytest.mark.slow
def test_episodic_bound_and_indexes_hold_under_8_writer_processes(redis_url, redis_client):
    mem = EpisodicMemory(max_episodes=20, agent_id="crowd")
    peak = _run_writers(redis_url, _fill_episodes, lambda: redis_client.zcard(mem._key("activity")))
    assert peak <= 20 and len(mem) == 20
    issued = [i.decode() for i in redis_client.lrange("test:issued", 0, -1)]
    assert len(set(issued)) == WRITERS * ADDS
    episodes = mem.all_episodes()
    assert {e.episode_id for e in episodes} == {k.decode() for k in redis_client.hkeys(mem._key("episodes"))}
    listed = [e for ep in episodes for e in ep.event_ids]
    stored = {k.decode() for k in redis_client.hkeys(mem._key("events"))}
    assert len(listed) == len(set(listed)) and set(listed) == stored  # no orphan, no dangling event
    assert stored <= set(issued)
    for ep in episodes:
        assert len(ep.event_ids) <= 10
        events = [mem.get_event(e) for e in ep.event_ids]
        # each writer's events went to that writer's episodes (coherence by participants/location)
        assert {e["participants"][0] for e in events} == set(ep.participants)
        assert all(e["episode_id"] == ep.episode_id for e in events)
