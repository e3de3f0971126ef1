"""rq-dashboard in a real browser (issue 14.12): headless Chromium, driven by Playwright,
on `piano-dist dashboard`. The queues page lists piano's queues in priority order; the
workers page shows each worker's slots and the tasks running in them. Screenshots of
both pages are taken and checked (PIANO_SCREENSHOT_DIR keeps them).

Needs Debian's chromium (`apt-get install chromium`; .ci/run installs it) and the
playwright package (the test extra). Without them this test fails: it never passes
without having looked at the page.
"""
from __future__ import annotations

import subprocess

from support.browser import browser, keep_screenshot, png_size  # noqa: F401 (browser: a fixture)
from support.cli import piano_dist_path
from support.foundation import wait_for_workers
from support.sample_modules import Echo, Sleeper
from support.waiting import wait_until
from support.workers import WorkerProcess, worker_env

from piano_dist import ConcurrentModuleManager
from piano_dist.embedded import free_port

ORDER = ["piano.critical", "piano.high", "piano.normal", "piano.low", "piano.background"]


def test_dashboard_in_chromium_shows_queue_order_and_worker_slots(browser, redis_url, redis_client, tmp_path):
    worker = WorkerProcess(redis_url, concurrency=4, name="browser-worker")
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    port = free_port()
    log = open(tmp_path / "dashboard.log", "wb")
    dashboard = subprocess.Popen([piano_dist_path(), "dashboard", "--port", str(port)], env=worker_env(redis_url),
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        manager.register_module("echo", Echo())
        manager.register_module("sleeper", Sleeper())
        wait_for_workers(redis_client, ["browser-worker"], procs=[worker])
        # Every priority queue gets a task; two long ones keep two of the four slots busy.
        done = [manager.submit_task("echo", "run", priority=level) for level in range(1, 6)]
        manager.wait(done, timeout=30)
        busy = [manager.submit_task("sleeper", "until_cancelled", kwargs={"limit": 60}) for _ in range(2)]
        wait_until(lambda: all(manager.get_task_status(t)["status"] == "running" for t in busy), timeout=20,
                   message="two running tasks")

        page = browser.new_page(viewport={"width": 1280, "height": 800})
        base = f"http://127.0.0.1:{port}"

        def serving():
            assert dashboard.poll() is None, (tmp_path / "dashboard.log").read_text()
            try:
                return page.goto(base + "/0/view/queues").ok
            except Exception:  # not listening yet
                return False

        wait_until(serving, timeout=30, interval=0.2, message="the dashboard to serve")
        page.wait_for_selector("tr[data-role=queue]")
        names = [n.strip() for n in page.locator("tr[data-role=queue] td:first-child").all_inner_texts()]
        assert [n for n in names if n.startswith("piano.")] == ORDER, names
        shot = tmp_path / "piano-dashboard-queues.png"
        page.screenshot(path=str(shot), full_page=True)
        width, height = png_size(shot)
        assert width >= 1000 and height >= 300, (width, height)
        keep_screenshot(shot)

        page.goto(base + "/0/view/workers")
        row = page.locator('tr[data-worker="browser-worker"]')
        row.wait_for()
        slots = " ".join(row.locator("td[data-role=slots]").inner_text().replace("\xa0", " ").split())
        assert slots.startswith("2 / 4"), slots
        assert row.locator(".piano-slot").count() == 4 and row.locator(".piano-slot.busy").count() == 2
        running = row.locator("td[data-role=running] a").all_inner_texts()
        assert sorted(running) == sorted(busy), running
        assert row.locator("td[data-role=running]").inner_text().count("sleeper.until_cancelled") == 2
        shot = tmp_path / "piano-dashboard-workers.png"
        row.screenshot(path=str(shot))
        width, height = png_size(shot)
        assert width >= 300 and height >= 20, (width, height)
        keep_screenshot(shot)
        page.screenshot(path=str(tmp_path / "piano-dashboard-workers-page.png"), full_page=True)
        keep_screenshot(tmp_path / "piano-dashboard-workers-page.png")
        for t in busy:
            manager.cancel_task(t)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=10)
        log.close()
        worker.stop()
        manager.shutdown()
