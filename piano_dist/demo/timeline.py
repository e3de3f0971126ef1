"""The run as a picture: `piano-dist demo --timeline FILE.html`.

`timeline_data` turns the tasks' statuses (started_at / ended_at, worker, status, model
time) and the runner's samples of model calls in flight into compact columnar arrays;
`render_timeline` puts them into one self-contained HTML page (timeline.html: inline CSS
and JavaScript drawing on canvas, nothing fetched from the network).

A task's slot is not recorded, only its worker: each worker's tasks are packed into lanes
(first free lane, in order of start), so at no moment does a worker use more lanes than
it had tasks running, and the lanes show how its slots were kept busy. Times are
milliseconds since the run started (the wall clock read when its first task was
submitted), so they share an axis with the samples.
"""
from __future__ import annotations

import heapq
import json
import math
import os
from importlib import resources
from typing import Any, Iterable, Sequence

from .workload import STEPS, Workload, module_name

KINDS = tuple(STEPS)  # perceive, plan, act, recall, reflect
PLACEHOLDER = "__PIANO_TIMELINE_DATA__"


def pack_lanes(intervals: Iterable[tuple[int, int, Any]]) -> dict[Any, int]:
    """Lane per key for (start, end, key) intervals: each goes to the lowest-numbered lane
    free at its start (a lane whose last interval ended at or before it)."""
    lanes: dict[Any, int] = {}
    free: list[int] = []           # lane numbers free now
    busy: list[tuple[int, int]] = []  # (end, lane) of the lanes in use
    opened = 0
    for start, end, key in sorted(intervals, key=lambda iv: (iv[0], iv[1])):
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, opened = opened, opened + 1
        heapq.heappush(busy, (end, lane))
        lanes[key] = lane
    return lanes


def busy_series(intervals: Iterable[tuple[int, int]]) -> list[int]:
    """How many intervals are open over time, as a step function: flat [t0, n0, t1, n1, …],
    n holding from t until the next t (an interval ending at t no longer counts at t)."""
    events: dict[int, int] = {}
    for start, end in intervals:
        events[start] = events.get(start, 0) + 1
        events[end] = events.get(end, 0) - 1
    series: list[int] = []
    level = 0
    for t in sorted(events):
        if events[t] == 0:
            continue
        level += events[t]
        series += [t, level]
    return series


def timeline_data(workload: Workload, statuses: dict[str, dict | None], *, started_at: float,
                  wall_seconds: float, samples: Sequence[Sequence[float]] = (), slots: int | None = None,
                  summary: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Everything the page draws, every task once (those that never started have no times).

    ``started_at``: epoch seconds the run started; ``samples``: (seconds since then, model
    calls in flight, tasks ended) tuples; ``summary``: (label, text) pairs shown above."""
    status_index: dict[str, int] = {}
    worker_index: dict[str, int] = {}
    cols: dict[str, list] = {name: [] for name in
                             ("agent", "tick", "kind", "status", "start", "dur", "worker", "lane", "model", "calls")}
    wall_ms = max(0, round(wall_seconds * 1000))

    for a, agent in enumerate(workload.agents):
        for tick in range(workload.ticks):
            for k, kind in enumerate(KINDS):
                status = statuses.get(workload.task_id(agent, tick, kind)) or {}
                start, end = _ms(status.get("started_at"), started_at), _ms(status.get("ended_at"), started_at)
                if start is not None and end is None:  # still running when the run was cut short
                    end = max(start, wall_ms)
                worker = status.get("worker") if start is not None else None
                model = _ms(status.get("model_seconds"), 0.0)
                cols["agent"].append(a)
                cols["tick"].append(tick)
                cols["kind"].append(k)
                cols["status"].append(status_index.setdefault(str(status.get("status") or "missing"), len(status_index)))
                cols["start"].append(start)
                cols["dur"].append(None if start is None else max(0, end - start))
                cols["worker"].append(None if worker is None else worker_index.setdefault(str(worker), len(worker_index)))
                cols["model"].append(model)
                cols["calls"].append(int(status.get("model_calls") or 0))

    workers = sorted(worker_index)  # listed by name
    renumber = {worker_index[name]: new for new, name in enumerate(workers)}
    cols["worker"] = [None if w is None else renumber[w] for w in cols["worker"]]

    by_worker: dict[int, list[tuple[int, int, int]]] = {}
    for i, (start, dur, w) in enumerate(zip(cols["start"], cols["dur"], cols["worker"])):
        if start is not None and w is not None:
            by_worker.setdefault(w, []).append((start, start + dur, i))
    lane_of: dict[int, int] = {}
    lanes = [0] * len(workers)
    for w, intervals in by_worker.items():
        packed = pack_lanes(intervals)
        lane_of.update(packed)
        lanes[w] = max(packed.values()) + 1
    cols["lane"] = [lane_of.get(i) for i in range(len(cols["start"]))]

    started = [i for i, s in enumerate(cols["start"]) if s is not None]
    ends = [cols["start"][i] + cols["dur"][i] for i in started]
    return {
        "version": 1,
        "run_id": workload.run_id,
        "task_id_format": workload.task_id("{agent}", "{tick}", "{kind}"),
        "module_format": module_name("{kind}", "{agent}"),
        "kinds": list(KINDS),
        "statuses": list(status_index),
        "agents": list(workload.agents),
        "ticks": workload.ticks,
        "workers": workers,
        "lanes": lanes,
        "slots": slots,
        "wall_ms": max([wall_ms, *ends]),
        "summary": [[str(label), str(text)] for label, text in summary],
        "tasks": cols,
        "busy": busy_series((cols["start"][i], cols["start"][i] + cols["dur"][i]) for i in started),
        "inflight": [v for t, n, *_ in samples for v in (round(float(t) * 1000), int(n))],
    }


def _ms(seconds: float | None, origin: float) -> int | None:
    """Milliseconds since ``origin``; None for a time that is missing or not a finite number."""
    try:
        value = (float(seconds) - origin) * 1000
    except (TypeError, ValueError):
        return None
    return round(value) if math.isfinite(value) else None


def render_timeline(data: dict[str, Any]) -> str:
    template = resources.files(__package__).joinpath("timeline.html").read_text(encoding="utf-8")
    # Inside <script type="application/json">: no "</script>" or "<!--" may appear, so no
    # "<" at all (JSON allows it only inside strings, where \u003c means the same).
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    head, found, tail = template.partition(PLACEHOLDER)
    if not found:
        raise RuntimeError("timeline.html has no data placeholder")
    return head + payload + tail


def write_timeline(path: str | os.PathLike, data: dict[str, Any]) -> int:
    """Write the page (replacing the file at once, never leaving half a page); its size in bytes."""
    page = render_timeline(data).encode("utf-8")
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(page)
    os.replace(tmp, path)
    return len(page)
