"""Every bad input to submit_task / register_module / unregister_module is refused with a
clear error and leaves the store exactly as it was; CLI mistakes print one line."""
from __future__ import annotations

import pytest

from support.foundation import redis_snapshot, run_cli
from support.foundation_modules import WithAttributes
from support.sample_modules import Echo
from support.waiting import wait_until

from piano_dist import (ConcurrentModuleManager, Priority, QueueFullError, SecurityError,
                        UnknownModuleError, UnknownTaskError)


@pytest.fixture
def manager(redis_url):
    m = ConcurrentModuleManager(max_workers=0, redis_url=redis_url, max_queue_size=3)
    m.register_module("echo", Echo())
    m.register_module("attrs", WithAttributes())
    yield m
    m.shutdown()


class Opaque:
    def __repr__(self):
        return "<Opaque>"


BAD_SUBMISSIONS = [
    # (id, kwargs for submit_task, exception type, words the message must contain)
    ("unknown-module", dict(module_name="no_such_module"), UnknownModuleError, ["no_such_module"]),
    ("missing-method", dict(module_name="echo", method_name="fly"), SecurityError, ["fly"]),
    ("private-method", dict(module_name="echo", method_name="_private"), SecurityError, ["_private", "private"]),
    ("dunder-method", dict(module_name="echo", method_name="__init__"), SecurityError, ["__init__"]),
    ("dunder-class", dict(module_name="echo", method_name="__class__"), SecurityError, ["__class__"]),
    ("non-callable", dict(module_name="attrs", method_name="threshold"), SecurityError, ["threshold"]),
    ("property", dict(module_name="attrs", method_name="mood"), SecurityError, ["mood"]),
    ("instance-attr", dict(module_name="attrs", method_name="config"), SecurityError, ["config"]),
    ("args-object", dict(module_name="echo", args=(1, Opaque())), SecurityError, ["args[1]"]),
    ("args-set", dict(module_name="echo", args=("ok", {1, 2})), SecurityError, ["args[1]"]),
    ("args-nested", dict(module_name="echo", args=([1, [2, Opaque()]],)), SecurityError, ["args[0][1][1]"]),
    ("kwargs-object", dict(module_name="echo", kwargs={"when": Opaque()}), SecurityError, ["kwargs['when']"]),
    ("kwargs-nan", dict(module_name="echo", kwargs={"x": float("nan")}), SecurityError, ["kwargs['x']"]),
    ("kwargs-key", dict(module_name="echo", kwargs={"a": {3: "x"}}), SecurityError, ["kwargs['a']"]),
    ("unknown-dependency", dict(module_name="echo", dependencies={"echo_run_doesnotexist"}), UnknownTaskError,
     ["echo_run_doesnotexist"]),
    ("priority-int", dict(module_name="echo", priority=9), ValueError, ["priority"]),
    ("priority-name", dict(module_name="echo", priority="urgent"), ValueError, ["urgent"]),
    ("priority-bool", dict(module_name="echo", priority=True), ValueError, ["priority"]),
    ("priority-float", dict(module_name="echo", priority=1.5), ValueError, ["priority"]),
]


@pytest.mark.parametrize("case", BAD_SUBMISSIONS, ids=[c[0] for c in BAD_SUBMISSIONS])
def test_bad_submission_is_refused_and_stores_nothing(manager, redis_client, case):
    _, kwargs, error, words = case
    before = redis_snapshot(redis_client)
    with pytest.raises(error) as info:
        manager.submit_task(**kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, f"{message!r} does not mention {word!r}"
    assert redis_snapshot(redis_client) == before


def test_queue_full_is_refused_stores_nothing_and_signals_overload(manager, redis_client):
    overloads = []
    manager.add_event_callback("system_overload", lambda *a: overloads.append(a))
    for i in range(3):
        manager.submit_task("echo", args=(i,), priority=Priority.LOW)
    before = redis_snapshot(redis_client)
    with pytest.raises(QueueFullError) as info:
        manager.submit_task("echo", args=(99,), priority=Priority.CRITICAL)
    assert "max_queue_size" in str(info.value) and "3" in str(info.value)
    assert redis_snapshot(redis_client) == before
    wait_until(lambda: overloads, timeout=5, message="the system_overload callback")
    assert len(overloads) == 1


def test_registration_errors_store_nothing(manager, redis_client):
    before = redis_snapshot(redis_client)
    with pytest.raises(ValueError, match="already registered"):
        manager.register_module("echo", Echo())
    with pytest.raises(TypeError, match="no public methods to run as tasks"):
        manager.register_module("plain", object())
    with pytest.raises(KeyError, match="nobody"):
        manager.unregister_module("nobody")
    assert redis_snapshot(redis_client) == before


def _one_error_line(result, *prefixes: str) -> str:
    """The README's promise: one non-empty line in all, on stderr, `error: …`, exit 2."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert not result.stdout.strip(), result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefixes), result.stderr
    return lines[0]


CLI_MISTAKES = [
    # (argv, expected prefix of the error line, a word it must contain)
    (["submit", "no_such_module"], "error:", "no_such_module"),
    (["submit", "echo", "_private"], "error:", "_private"),
    (["submit", "echo", "fly"], "error:", "fly"),
    (["submit", "echo", "run", "--args", "[1, oops]"], "error:", "--args"),
    (["submit", "echo", "run", "--args", "{}"], "error:", "--args"),
    (["submit", "echo", "run", "--priority", "urgent"], "error:", "urgent"),
    (["submit", "echo", "run", "--depends-on", "nope_nope"], "error:", "nope_nope"),
    (["pause", "no_such_module"], "error:", "no_such_module"),
    (["resume", "no_such_module"], "error:", "no_such_module"),
    (["status", "no_such_task"], "error:", "no_such_task"),
    (["cancel", "no_such_task"], "error:", "no_such_task"),
    (["worker", "--queues", "bogus"], "error:", "bogus"),
    (["--prefix", "bad prefix!", "info"], "error:", "prefix"),
    (["frobnicate"], "error:", "frobnicate"),
]


@pytest.mark.parametrize("argv,prefix,word", CLI_MISTAKES, ids=[" ".join(c[0]) for c in CLI_MISTAKES])
def test_cli_mistake_prints_one_error_line(manager, redis_client, redis_url, argv, prefix, word):
    before = redis_snapshot(redis_client)
    result = run_cli(argv, redis_url)
    line = _one_error_line(result, prefix)
    assert word in line, result.stderr
    assert redis_snapshot(redis_client) == before


def test_cli_unreachable_redis_is_one_error_line(redis_server):
    from piano_dist.embedded import free_port

    result = run_cli(["--redis-url", f"redis://127.0.0.1:{free_port()}/0", "info"], None)
    line = _one_error_line(result, "error:")
    assert "Redis" in line
