"""The data the demo's timeline page is drawn from (issue 11.5): lanes per worker slot,
slots busy over time, every task once; the page is self-contained and its data cannot
break out of its script block; `--timeline` refuses a file it could not write."""
from __future__ import annotations

import json
import re
from pathlib import Path

from support.cli import one_error_line, piano_dist

from piano_dist.demo.timeline import KINDS, busy_series, pack_lanes, render_timeline, timeline_data
from piano_dist.demo.workload import Workload

T0 = 1_700_000_000.0
DATA = re.compile(r'<script type="application/json" id="piano-timeline-data">(.*?)</script>', re.S)


def _overlapping(intervals):
    """Pairs of (start, end) intervals that share a moment (touching ends do not)."""
    ordered = sorted(intervals)
    return [(a, b) for a, b in zip(ordered, ordered[1:]) if b[0] < a[1]]


def test_pack_lanes_takes_the_first_free_lane():
    #  lane 0: [0,100) [100,200) [250,300)     lane 1: [50,150) [160,400)     lane 2: [60,70)
    intervals = [(0, 100, "a"), (50, 150, "b"), (60, 70, "c"), (100, 200, "d"), (160, 400, "e"), (250, 300, "f")]
    lanes = pack_lanes(intervals)
    assert lanes == {"a": 0, "b": 1, "c": 2, "d": 0, "e": 1, "f": 0}
    for lane in set(lanes.values()):
        assert not _overlapping([(s, e) for s, e, k in intervals if lanes[k] == lane])
    # Never more lanes than intervals open at once (here 3, at t=60).
    assert max(lanes.values()) + 1 == max(n for n in busy_series((s, e) for s, e, _ in intervals)[1::2])


def test_busy_series_is_a_step_function_of_open_intervals():
    # An interval ending at t no longer counts at t; one starting there does.
    assert busy_series([(0, 100), (50, 150), (100, 200)]) == [0, 1, 50, 2, 150, 1, 200, 0]
    assert busy_series([(10, 20), (10, 30), (40, 50)]) == [10, 2, 20, 1, 30, 0, 40, 1, 50, 0]
    assert busy_series([]) == []


def _hand_made_run():
    """2 agents × 2 ticks = 20 tasks on two workers; one task never started, one still
    running when the run ended, one with no status at all."""
    workload = Workload("run7", ["ann", "bob"], 2, 0)
    statuses = {}
    clock = {"w-a": 0.0, "w-b": 0.0}
    for a, agent in enumerate(workload.agents):
        for tick in range(2):
            for k, kind in enumerate(KINDS):
                worker = "w-a" if (a + k) % 2 else "w-b"
                start = clock[worker] + 0.01 * k
                statuses[workload.task_id(agent, tick, kind)] = {
                    "status": "completed", "started_at": T0 + start, "ended_at": T0 + start + 0.25,
                    "worker": worker, "model_seconds": 0.2 if kind == "plan" else None,
                    "model_calls": 1 if kind == "plan" else 0}
                clock[worker] += 0.1
    statuses[workload.task_id("bob", 1, "reflect")] = {"status": "dependency_failed", "started_at": None,
                                                       "ended_at": None, "worker": None}
    statuses[workload.task_id("bob", 1, "act")].update(status="running", ended_at=None)
    statuses[workload.task_id("bob", 1, "recall")] = None
    return workload, statuses


def test_timeline_data_has_every_task_once_and_lanes_never_overlap():
    workload, statuses = _hand_made_run()
    data = timeline_data(workload, statuses, started_at=T0, wall_seconds=3.0,
                         samples=[(0.0, 0, 0), (0.25, 3, 2), (0.5, 1, 9)], slots=8, summary=[("wall", "3.00 s")])
    cols = data["tasks"]
    assert all(len(column) == 20 for column in cols.values())
    seen = {(data["agents"][a], t, data["kinds"][k]) for a, t, k in zip(cols["agent"], cols["tick"], cols["kind"])}
    assert seen == {(agent, tick, kind) for agent in ("ann", "bob") for tick in (0, 1) for kind in KINDS}
    assert data["task_id_format"].format(agent="bob", tick=1, kind="act") == workload.task_id("bob", 1, "act")
    assert data["module_format"].format(kind="plan", agent="ann") == "plan.ann"
    assert data["workers"] == ["w-a", "w-b"]

    def index(agent, tick, kind):
        return next(i for i in range(20) if (data["agents"][cols["agent"][i]], cols["tick"][i],
                                             data["kinds"][cols["kind"][i]]) == (agent, tick, kind))

    never, running, missing = index("bob", 1, "reflect"), index("bob", 1, "act"), index("bob", 1, "recall")
    assert data["statuses"][cols["status"][never]] == "dependency_failed"
    assert cols["start"][never] is None and cols["worker"][never] is None and cols["lane"][never] is None
    assert data["statuses"][cols["status"][missing]] == "missing" and cols["start"][missing] is None
    assert data["statuses"][cols["status"][running]] == "running"
    assert cols["start"][running] + cols["dur"][running] == 3000  # drawn up to the run's end
    plan = index("ann", 0, "plan")
    assert cols["model"][plan] == 200 and cols["calls"][plan] == 1 and cols["dur"][plan] == 250
    assert cols["model"][index("ann", 0, "act")] is None

    drawn = [i for i in range(20) if cols["start"][i] is not None]
    assert len(drawn) == 18
    for w, lanes in enumerate(data["lanes"]):
        mine = [i for i in drawn if cols["worker"][i] == w]
        assert {cols["lane"][i] for i in mine} == set(range(lanes))
        for lane in range(lanes):
            assert not _overlapping([(cols["start"][i], cols["start"][i] + cols["dur"][i])
                                     for i in mine if cols["lane"][i] == lane])
        # As many lanes as the worker had tasks running at once, no more.
        assert lanes == max(busy_series((cols["start"][i], cols["start"][i] + cols["dur"][i]) for i in mine)[1::2])
    assert data["busy"] == busy_series((cols["start"][i], cols["start"][i] + cols["dur"][i]) for i in drawn)
    assert data["inflight"] == [0, 0, 250, 3, 500, 1]
    assert data["wall_ms"] == 3000 and data["slots"] == 8 and data["summary"] == [["wall", "3.00 s"]]


def test_slots_busy_of_a_tiny_run_by_hand():
    workload = Workload("r", ["a1"], 1, 0)
    times = {"perceive": (0.0, 0.1), "plan": (0.1, 0.4), "recall": (0.1, 0.2), "reflect": (0.15, 0.5),
             "act": (0.4, 0.45)}
    statuses = {workload.task_id("a1", 0, kind): {"status": "completed", "started_at": T0 + s, "ended_at": T0 + e,
                                                  "worker": "w1"} for kind, (s, e) in times.items()}
    data = timeline_data(workload, statuses, started_at=T0, wall_seconds=0.5)
    # At 400 ms planning ends as the action starts: still 2 busy (the action, reflection).
    assert data["busy"] == [0, 1, 100, 2, 150, 3, 200, 2, 450, 1, 500, 0]
    assert data["lanes"] == [3]
    lane = dict(zip((data["kinds"][k] for k in data["tasks"]["kind"]), data["tasks"]["lane"]))
    assert lane == {"perceive": 0, "recall": 0, "plan": 1, "reflect": 2, "act": 0}


def test_untrusted_times_and_names_cannot_break_the_page():
    workload = Workload("r", ["a1"], 1, 0)
    hostile = "</script><script>alert(1)</script><!--"
    statuses = {workload.task_id("a1", 0, "perceive"): {"status": hostile, "started_at": T0, "ended_at": float("nan"),
                                                         "worker": hostile, "model_seconds": float("inf")},
                workload.task_id("a1", 0, "plan"): {"status": "completed", "started_at": "soon", "ended_at": T0 + 1,
                                                     "worker": "w"}}
    data = timeline_data(workload, statuses, started_at=T0, wall_seconds=1.0)
    cols = data["tasks"]
    assert cols["start"][0] == 0 and cols["dur"][0] == 1000  # no end: drawn to the run's end
    assert cols["model"][0] is None and cols["start"][1] is None
    page = render_timeline(data)
    payload = DATA.search(page).group(1)
    assert "<" not in payload
    assert json.loads(payload) == json.loads(json.dumps(data))
    assert page.count("<script") == 2  # the data block and the page's own script, nothing injected


def test_the_page_is_self_contained_and_ships_with_the_package():
    workload, statuses = _hand_made_run()
    page = render_timeline(timeline_data(workload, statuses, started_at=T0, wall_seconds=3.0))
    assert not re.search(r"\b(?:src|href)\s*=", page), "the page must not load anything"
    assert "://" not in page and "@import" not in page
    assert "__PIANO_TIMELINE_DATA__" not in page
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"piano_dist.demo"' in pyproject and '"demo/*.html"' in pyproject


def test_timeline_option_refuses_a_file_it_could_not_write(tmp_path):
    line = one_error_line(piano_dist(["demo", "--timeline", str(tmp_path / "missing" / "run.html")]))
    assert "--timeline" in line and "does not exist" in line
    line = one_error_line(piano_dist(["demo", "--timeline", str(tmp_path)]))
    assert "--timeline" in line and "not a file name" in line


def test_a_run_cut_short_still_writes_its_timeline(redis_url, tmp_path):
    import pytest

    from piano_dist.demo import DemoConfig, DemoRun

    page_path = tmp_path / "cut.html"
    # ~60 model calls of 0.3 s on 2 slots: about 9 s of work, cut after 3 s.
    config = DemoConfig(agents=6, ticks=3, workers=1, concurrency=2, llm_latency=0.3, timeout=3.0,
                        report_path=None, timeline_path=str(page_path))
    run = DemoRun(config, redis_url=redis_url)
    with pytest.raises(TimeoutError):
        run.run()
    assert run.timeline_written
    data = json.loads(DATA.search(page_path.read_text()).group(1))
    cols = data["tasks"]
    assert len(cols["kind"]) == 6 * 3 * len(KINDS)
    assert any(s is not None for s in cols["start"]), "no task started within 3 s"
    assert any(s is None for s in cols["start"]), "every task started within 3 s"
    assert {data["statuses"][s] for s in cols["status"]} - {"completed"}
    assert dict(data["summary"])["run"].startswith("cut short after")
    assert data["workers"] == [f"{run.workload.run_id}-w1"] and data["lanes"][0] <= 2
