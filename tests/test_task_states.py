"""The task state machine: the STATES table in includes/task_common.lua, TaskStatus, the
scripts that move tasks and docs/tasks.md agree."""
import re
from pathlib import Path

from rq.job import Job, JobStatus

import piano_dist
from piano_dist.core.task_scripts import FinishReply, RunOutcome
from piano_dist.core.types import TERMINAL_STATUSES, TaskStatus

LUA = Path(piano_dist.__file__).parent / "lua"
DOC = Path(piano_dist.__file__).parent.parent / "docs" / "tasks.md"
COMMON = (LUA / "includes" / "task_common.lua").read_text()
ROW = re.compile(r"^\s*(\w+)\s*=\s*\{piano = '(\w+)',\s*rq = '(\w+)'(?:,\s*registry = '(\w+)')?\}", re.M)
STATES = {m[1]: (m[2], m[3], m[4]) for m in ROW.finditer(COMMON[COMMON.index("local STATES"):])}
# Scripts that move tasks: those that include task_common (module_resume and the
# task_* scripts); the state_* scripts keep a field named `status` in change hashes.
TASK_SCRIPTS = {p.stem: p.read_text() for p in LUA.glob("*.lua") if "--!include task_common" in p.read_text()}
MOVES = re.compile(r"\b(set_status|status_fields|set_terminal|push_queued|park|settle_children)\(")


def test_the_table_names_every_task_status_and_only_rq_statuses():
    assert {piano for piano, _, _ in STATES.values()} == {s.value for s in TaskStatus}
    assert {piano for piano, _, registry in STATES.values() if registry} == {s.value for s in TERMINAL_STATUSES}
    assert {rq for _, rq, _ in STATES.values()} <= {s.value for s in JobStatus}
    assert STATES["retry_wait"] == ("queued", "scheduled", None)


def test_scripts_move_tasks_only_through_set_status():
    for name, text in {**TASK_SCRIPTS, "task_common": COMMON}.items():
        body = text.split("]]", 1)[1]  # past the header
        for call in re.findall(r"redis\.call\('HSET'[^)]*", body):
            if call.endswith("'status', s.rq, 'piano_status', s.piano, ..."):
                continue  # set_status itself
            assert not re.search(r"'(piano_)?status'", call), f"{name}: {call}"
        for state in re.findall(r"\b(?:set_status\(\w+|status_fields\(|set_terminal\(\w+)\s*,?\s*'(\w+)'", body):
            assert state in STATES, f"{name} moves a task to {state!r}, which STATES lacks"


def _transitions():
    rows = []
    section = DOC.read_text().split("## Transitions", 1)[1]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith(("`", "(new)")):
            scripts = re.findall(r"`(\w+)`", cells[2])
            rows.append((cells[0].strip("`"), cells[1].strip("`"), scripts))
    return rows


def test_docs_name_every_state_and_every_script_that_moves_tasks():
    rows = _transitions()
    named_states = {s for a, b, _ in rows for s in (a, b)} - {"(new)"}
    assert named_states == set(STATES)
    named_scripts = {s for _, _, scripts in rows for s in scripts}
    assert named_scripts <= set(TASK_SCRIPTS)
    movers = {name for name, text in TASK_SCRIPTS.items() if MOVES.search(text.split("]]", 1)[1])}
    assert movers <= named_scripts  # module_resume moves tasks between lists, not states
    states_table = DOC.read_text().split("## States", 1)[1].split("## Transitions", 1)[0]
    for state, (piano, rq, registry) in STATES.items():
        assert re.search(rf"\| `{state}` \| `{piano}` \| `{rq}` \|\s*{f'`{registry}`' if registry else ''}\s*\|",
                         states_table), state


def test_a_task_waiting_out_its_retry_delay_is_queued_to_piano_and_scheduled_to_rq(redis_client):
    from support.sample_modules import Echo

    from piano_dist import ConcurrentModuleManager, TaskSpec

    manager = ConcurrentModuleManager(max_workers=0, connection=redis_client, max_queue_size=0)
    try:
        manager.register_module("echo", Echo())
        task_id = manager.submit_many([TaskSpec("echo", "run", retries=1, retry_delay=60)])[0]
        tasks = manager.client.tasks
        [row] = tasks.claim([tasks.keys.rq_queue(q) for q in tasks.keys.queue_names], "w1", 5000, 1, "{}", 10)
        assert Job.fetch(task_id, connection=redis_client).get_status() == JobStatus.STARTED
        reply = tasks.finish(RunOutcome(task_id, "w1", row.attempt, "failed", "boom", 1))
        assert FinishReply.decode(reply).status == "retrying"
        status = manager.client.get_status(task_id)
        assert (status["status"], status["waiting_because"]) == ("queued", "retry after 60s")
        assert Job.fetch(task_id, connection=redis_client).get_status() == JobStatus.SCHEDULED
        assert manager.client.cancel(task_id)
        assert Job.fetch(task_id, connection=redis_client).get_status() == JobStatus.CANCELED
    finally:
        manager.shutdown()
