"""A random task graph run by worker processes ends exactly as the graph implies."""
import random
import re

from support.failure_modules import DagNode
from support.failure_procs import Workers

from piano_dist import ConcurrentModuleManager, TaskSpec

N_TASKS = 1000


def build_graph(seed: int, n: int):
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        k = rng.randint(0, min(3, i))
        parents = rng.sample(range(i), k) if k else []
        tolerated = [p for p in parents if rng.random() < 0.2]
        nodes.append({"parents": parents, "tolerated": tolerated, "fails": rng.random() < 0.05})
    return nodes


def expected_statuses(nodes):
    out = []
    for node in nodes:
        blocked = any(out[p] != "completed" for p in node["parents"] if p not in node["tolerated"])
        out.append("dependency_failed" if blocked else "failed" if node["fails"] else "completed")
    return out


def ancestors(nodes, i):
    seen, stack = set(), list(nodes[i]["parents"])
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(nodes[p]["parents"])
    return seen


def test_random_dag_ends_as_the_graph_implies(redis_url, redis_client):
    nodes = build_graph(seed=20240611, n=N_TASKS)
    expected = expected_statuses(nodes)
    # The graph must exercise every path: failures, cascades, tolerated failures.
    assert expected.count("failed") > 20 and expected.count("dependency_failed") > 50
    tolerated_bad = sum(1 for i, n in enumerate(nodes) if expected[i] != "dependency_failed"
                        and any(expected[p] != "completed" for p in n["tolerated"]))
    assert tolerated_bad > 5

    ids = [f"dag-{i:04d}" for i in range(N_TASKS)]
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url, max_queue_size=0)
    manager.register_module("dag", DagNode())
    with Workers(redis_url) as workers:
        for _ in range(2):
            workers.start(concurrency=8, log_level="WARNING")
        try:
            specs = [TaskSpec("dag", "fail" if n["fails"] else "ok", args=(ids[i],),
                              dependencies=[ids[p] for p in n["parents"]] or None,
                              allow_failure=[ids[p] for p in n["tolerated"]] or None, task_id=ids[i])
                     for i, n in enumerate(nodes)]
            assert manager.submit_many(specs) == ids
            statuses = manager.wait(ids, timeout=60)
        finally:
            manager.shutdown()

    wrong = {ids[i]: (statuses[ids[i]]["status"], expected[i]) for i in range(N_TASKS)
             if statuses[ids[i]]["status"] != expected[i]}
    assert not wrong, f"{len(wrong)} tasks ended otherwise than the graph implies: {list(wrong.items())[:10]}"

    for i, tid in enumerate(ids):
        st = statuses[tid]
        if expected[i] == "completed":
            assert st["result"] == tid and st["attempts"] == 1
        elif expected[i] == "failed":
            assert "deliberate failure of " + tid in st["error"] and st["attempts"] == 1
        else:
            assert st["attempts"] == 0, f"{tid} ran although a dependency failed"
            named = re.match(r"dependency (\S+) ended (\w+)", st["error"])
            assert named, st["error"]
            culprit = ids.index(named.group(1))
            assert culprit in ancestors(nodes, i) and expected[culprit] != "completed", st["error"]

    # Nothing is left behind in any queue, deferred registry or pending set.
    counts = {k.decode(): int(v) for k, v in redis_client.hgetall("piano:stats").items()}
    assert counts.get("backlog", 0) == 0
    for status in ("completed", "failed", "dependency_failed"):
        assert counts.get(status, 0) == expected.count(status)
    assert redis_client.zcard("piano:running") == 0
    assert not list(redis_client.scan_iter("piano:task:*:pending"))
    for key in redis_client.scan_iter("rq:deferred:*"):
        assert redis_client.zcard(key) == 0
    for key in redis_client.scan_iter("rq:queue:*"):
        assert redis_client.llen(key) == 0
