"""`piano-dist demo --timeline` in a real browser (issue 11.5): a small demo writes the
page, headless Chromium (Debian's, through Playwright) opens it from disk, and the test
checks what it drew: one row per agent with every task, each module kind's colour on the
canvas, the legend, the details of a hovered task, the per-slot view, no JavaScript
errors. A screenshot lands in the test's tmp dir (PIANO_SCREENSHOT_DIR keeps a copy)."""
from __future__ import annotations

import json
import re

from support.browser import browser, keep_screenshot, png_size  # noqa: F401 (browser: a fixture)
from support.cli import piano_dist

from piano_dist.demo.timeline import KINDS

AGENTS, TICKS, SLOTS = 4, 2, 8
DATA = re.compile(r'<script type="application/json" id="piano-timeline-data">(.*?)</script>', re.S)

# Pixels of each colour on a canvas (exact matches: the inside of every drawn bar).
COUNT_COLOURS = """([id, colours]) => {
  const c = document.getElementById(id), data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const want = colours.map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16))), counts = colours.map(() => 0);
  for (let p = 0; p < data.length; p += 4)
    for (let k = 0; k < want.length; k++)
      if (data[p] === want[k][0] && data[p + 1] === want[k][1] && data[p + 2] === want[k][2] && data[p + 3] === 255) counts[k]++;
  return counts;
}"""


def test_demo_timeline_page_renders_in_chromium(browser, redis_url, tmp_path):
    page_path = tmp_path / "timeline.html"
    result = piano_dist(["demo", "--agents", str(AGENTS), "--ticks", str(TICKS), "--workers", "1",
                         "--concurrency", str(SLOTS), "--report", "", "--timeline", str(page_path)],
                        redis_url=redis_url, cwd=str(tmp_path), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"timeline written to {page_path}" in result.stderr
    data = json.loads(DATA.search(page_path.read_text()).group(1))
    tasks = AGENTS * TICKS * len(KINDS)
    assert len(data["tasks"]["kind"]) == tasks and None not in data["tasks"]["start"]
    with_model = [i for i, ms in enumerate(data["tasks"]["model"]) if ms is not None]
    assert with_model, "no task recorded model time"

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_path.as_uri())
    page.wait_for_selector("body[data-ready='1']")

    legend = page.locator("#legend [data-kind]")
    assert [legend.nth(i).get_attribute("data-kind") for i in range(legend.count())] == list(KINDS)
    assert [n.strip() for n in page.locator("#legend [data-kind] .name").all_inner_texts()] == list(KINDS)
    state = page.evaluate("({rows: pianoTimeline.rows, drawn: pianoTimeline.drawn, tasks: pianoTimeline.tasks})")
    assert state == {"rows": AGENTS, "drawn": tasks, "tasks": tasks}
    colours = page.evaluate("pianoTimeline.colors")
    counts = page.evaluate(COUNT_COLOURS, ["lanes", colours])
    assert all(n > 0 for n in counts), dict(zip(KINDS, counts))
    assert page.locator("#summary").inner_text().count("completed 40") == 1

    # Hovering a task that waited on the model shows what it was, where it ran and for how long.
    i = with_model[0]
    spot = page.evaluate("i => pianoTimeline.locate(i)", i)
    page.mouse.move(spot["x"], spot["y"])
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    assert tip.get_attribute("data-task") == spot["id"]
    fields = dict(line.split("\t", 1) for line in tip.inner_text().splitlines())
    kind = data["kinds"][data["tasks"]["kind"][i]]
    agent = data["agents"][data["tasks"]["agent"][i]]
    assert fields["task"] == spot["id"] and spot["id"].endswith(f"-{agent}-t{data['tasks']['tick'][i]}-{kind}")
    assert fields["module"] == f"{kind}.{agent}" and fields["status"] == "completed"
    assert fields["worker"].startswith("w1 (slot lane ")
    assert re.fullmatch(r"\d+(\.\d+)? m?s", fields["duration"]), fields["duration"]
    assert re.match(r"\d+(\.\d+)? m?s \(\d+ calls?", fields["model time"]), fields["model time"]
    page.mouse.click(spot["x"], spot["y"])
    assert page.locator("#pinned").get_attribute("data-task") == spot["id"]

    # A kind clicked in the legend is hidden, and shown again.
    page.locator('#legend [data-kind="plan"]').click()
    assert page.evaluate("pianoTimeline.drawn") == tasks - AGENTS * TICKS
    page.locator('#legend [data-kind="plan"]').click()
    assert page.evaluate("pianoTimeline.drawn") == tasks

    # Dragging across a chart zooms every view to that span; "Whole run" goes back.
    whole = page.evaluate("pianoTimeline.wholeRun")
    box = page.locator("#busy").bounding_box()
    left, right = box["x"] + 150, box["x"] + box["width"] - 8  # the plot, right of the labels
    page.mouse.move(left + (right - left) * 0.25, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(left + (right - left) * 0.5, box["y"] + 40, steps=5)
    page.mouse.up()
    start, end = page.evaluate("pianoTimeline.range")
    span = whole[1] - whole[0]
    assert abs(start - (whole[0] + span * 0.25)) < span * 0.02 and abs(end - (whole[0] + span * 0.5)) < span * 0.02
    assert page.evaluate("pianoTimeline.drawn") < tasks
    page.get_by_role("button", name="Whole run").click()
    assert page.evaluate("pianoTimeline.range") == whole and page.evaluate("pianoTimeline.drawn") == tasks

    shot = tmp_path / "piano-demo-timeline-agents.png"
    page.screenshot(path=str(shot))
    assert png_size(shot) == (1400, 1000)
    keep_screenshot(shot)

    # One row per worker slot: no more lanes than the worker has slots, every task drawn.
    page.locator("input[name=view][value=slot]").check()
    state = page.evaluate("({view: pianoTimeline.view, rows: pianoTimeline.rows, drawn: pianoTimeline.drawn})")
    assert state["view"] == "slot" and 1 <= state["rows"] <= SLOTS and state["drawn"] == tasks
    assert state["rows"] == sum(data["lanes"])
    assert all(n > 0 for n in page.evaluate(COUNT_COLOURS, ["lanes", colours]))
    assert sum(page.evaluate(COUNT_COLOURS, ["busy", ["#1f5fbf"]])) > 0  # the slots-busy chart has a line
    shot = tmp_path / "piano-demo-timeline-slots.png"
    page.screenshot(path=str(shot))
    keep_screenshot(shot)
    assert errors == []
