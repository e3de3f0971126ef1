"""Malformed calls through the Python API and the CLI: each refused with a clear error
naming the problem, and nothing stored changes (every key and value compared)."""
import math

import pytest
from click.testing import CliRunner
from support.failure_procs import snapshot
from support.sample_modules import Echo

from piano_dist import (ConcurrentModuleManager, DependencyCycleError, SecurityError, TaskSpec,
                        UnknownModuleError, UnknownTaskError)
from piano_dist.cli.main import main as cli_main

EXISTING = "existing-task"      # a queued task (no workers run in this file)
CANCELLED = "cancelled-task"    # a task that already ended cancelled


@pytest.fixture
def env(redis_url, redis_client):
    manager = ConcurrentModuleManager(max_workers=0, redis_url=redis_url)
    manager.register_module("echo", Echo())
    manager.submit_many([TaskSpec("echo", "run", task_id=EXISTING),
                         TaskSpec("echo", "run", task_id=CANCELLED)])
    assert manager.cancel_task(CANCELLED)
    yield manager
    manager.shutdown()


def good(i):
    return TaskSpec("echo", "add", args=(i, 1), task_id=f"good-{i}")


class Obj:
    pass


S = "submit"
# (case id, how to call, what it is called with, error type, text the message must contain)
PYTHON_CASES = [
    ("unknown-module", S, dict(module_name="nope", method_name="run"), UnknownModuleError, "'nope' is not registered"),
    ("non-str-module", S, dict(module_name=5, method_name="run"), UnknownModuleError, "must be a string"),
    ("unknown-method", S, dict(module_name="echo", method_name="fly"), SecurityError, "no public method 'fly'"),
    ("dunder-init", S, dict(module_name="echo", method_name="__init__"), SecurityError, "private"),
    ("dunder-class", S, dict(module_name="echo", method_name="__class__"), SecurityError, "private"),
    ("private-method", S, dict(module_name="echo", method_name="_private"), SecurityError, "private"),
    ("empty-method", S, dict(module_name="echo", method_name=""), SecurityError, "non-empty string"),
    ("method-not-ident", S, dict(module_name="echo", method_name="run()"), SecurityError, "not a Python identifier"),
    ("priority-0", S, dict(module_name="echo", priority=0), SecurityError, "invalid priority 0"),
    ("priority-6", S, dict(module_name="echo", priority=6), SecurityError, "invalid priority 6"),
    ("priority-name", S, dict(module_name="echo", priority="urgent"), SecurityError, "invalid priority 'urgent'"),
    ("priority-bool", S, dict(module_name="echo", priority=True), SecurityError, "invalid priority True"),
    ("priority-float", S, dict(module_name="echo", priority=2.5), SecurityError, "invalid priority 2.5"),
    ("arg-set", S, dict(module_name="echo", args=({1, 2},)), SecurityError, "args[0] is a set"),
    ("arg-object", S, dict(module_name="echo", args=(1, Obj())), SecurityError, "args[1] is a Obj"),
    ("arg-nan", S, dict(module_name="echo", args=(math.nan,)), SecurityError, "only finite numbers"),
    ("arg-inf-nested", S, dict(module_name="echo", args=([{"x": math.inf}],)), SecurityError, "args[0][0]['x']"),
    ("arg-bytes", S, dict(module_name="echo", args=(b"raw",)), SecurityError, "args[0] is a bytes"),
    ("kwarg-set", S, dict(module_name="echo", kwargs={"when": {1}}), SecurityError, "kwargs['when'] is a set"),
    ("args-str", S, dict(module_name="echo", args="abc"), SecurityError, "args must be a list or tuple, not str"),
    ("args-int", S, dict(module_name="echo", args=5), SecurityError, "args must be a list or tuple, not int"),
    ("kwargs-list", S, dict(module_name="echo", kwargs=[1, 2]), SecurityError, "kwargs must be a dict, not list"),
    ("kwargs-int-key", S, dict(module_name="echo", kwargs={1: "a"}), SecurityError, "kwargs key 1"),
    ("kwargs-bad-key", S, dict(module_name="echo", kwargs={"a b": 1}), SecurityError, "kwargs key 'a b'"),
    ("oversize", S, dict(module_name="echo", args=("x" * 1_100_000,)), SecurityError, "the limit is 1000000"),
    ("too-deep", S, dict(module_name="echo", args=(eval("[" * 40 + "]" * 40),)), SecurityError, "nested deeper"),
    ("timeout-0", S, dict(module_name="echo", timeout=0), SecurityError, "timeout must be a positive number"),
    ("timeout-neg", S, dict(module_name="echo", timeout=-1), SecurityError, "timeout must be a positive number"),
    ("timeout-str", S, dict(module_name="echo", timeout="x"), SecurityError, "timeout must be a positive number"),
    ("timeout-nan", S, dict(module_name="echo", timeout=math.nan), SecurityError, "timeout must be a positive number"),
    ("retries-neg", S, dict(module_name="echo", retries=-1), SecurityError, "retries must be a non-negative"),
    ("max-attempts-0", S, dict(module_name="echo", max_attempts=0), SecurityError, "max_attempts must be a positive"),
    ("retry-delay-str", S, dict(module_name="echo", retry_delay="soon"), SecurityError, "retry_delay must be"),
    ("callback-not-callable", S, dict(module_name="echo", callback=42), SecurityError, "callback must be callable"),
    ("dep-unknown", S, dict(module_name="echo", dependencies=["no-such-task"]), UnknownTaskError,
     "dependency no-such-task is not a known task"),
    ("dep-bad-chars", S, dict(module_name="echo", dependencies=["bad id!"]), SecurityError,
     "dependencies contains an invalid task id 'bad id!'"),
    ("dep-as-str", S, dict(module_name="echo", dependencies=EXISTING), SecurityError,
     "dependencies must be a set or list"),
    ("dep-non-str", S, dict(module_name="echo", dependencies=[7]), SecurityError, "invalid task id 7"),
    ("allow-failure-non-dep", S, dict(module_name="echo", allow_failure=[EXISTING]), SecurityError,
     f"allow_failure names tasks that are not dependencies: {EXISTING}"),
    ("allow-failure-other", S, dict(module_name="echo", dependencies=[EXISTING], allow_failure=[CANCELLED]),
     SecurityError, "not dependencies"),
    ("task-id-chars", S, dict(module_name="echo", task_id="bad id/../x"), SecurityError, "task id 'bad id/../x' is invalid"),
    ("task-id-long", S, dict(module_name="echo", task_id="a" * 129), SecurityError, "is invalid"),
    ("task-id-empty-str-colon", S, dict(module_name="echo", task_id="a:b"), SecurityError, "is invalid"),
    ("task-id-exists", S, dict(module_name="echo", task_id=EXISTING), SecurityError, f"task id {EXISTING} already exists"),
    ("self-dependency", S, dict(module_name="echo", task_id="selfish", dependencies=["selfish"]),
     DependencyCycleError, "selfish"),
    # issue 12.19: gaps that let odd values through
    ("timeout-inf", S, dict(module_name="echo", timeout=math.inf), SecurityError, "timeout must be a positive number"),
    ("timeout-huge", S, dict(module_name="echo", timeout=1e300), SecurityError, "up to 31622400"),
    ("retry-delay-inf", S, dict(module_name="echo", retry_delay=math.inf), SecurityError, "retry_delay must be"),
    ("retry-delay-nan", S, dict(module_name="echo", retry_delay=math.nan), SecurityError, "retry_delay must be"),
    ("task-id-empty", S, dict(module_name="echo", task_id=""), SecurityError, "task id '' is invalid"),
    ("task-id-newline", S, dict(module_name="echo", task_id="abc\n"), SecurityError, "is invalid"),
    ("module-newline", S, dict(module_name="echo\n"), UnknownModuleError, "is not registered"),
    ("method-newline", S, dict(module_name="echo", method_name="run\n"), SecurityError, "not a Python identifier"),
    ("kwargs-key-newline", S, dict(module_name="echo", kwargs={"a\n": 1}), SecurityError, "kwargs key"),
    ("agent-id-huge", S, dict(module_name="echo", agent_id="a" * 1_500_000), SecurityError, "agent id"),
    ("agent-id-newline", S, dict(module_name="echo", agent_id="agent\n"), SecurityError, "agent id"),
    ("agent-id-braces", S, dict(module_name="echo", agent_id="{x}"), SecurityError, "agent id"),
]

MANY = "submit_many"
BATCH_CASES = [
    ("batch-bad-priority", MANY, lambda: [good(1), good(2), TaskSpec("echo", priority=9), good(3)],
     SecurityError, "invalid priority 9"),
    ("batch-unknown-key", MANY, lambda: [good(1), {"module_name": "echo", "colour": "red"}], ValueError,
     "task spec #1 has unknown keys: colour"),
    ("batch-no-module", MANY, lambda: [good(1), {"method_name": "run"}], ValueError, "task spec #1 needs a module_name"),
    ("batch-not-a-spec", MANY, lambda: [good(1), 42], TypeError, "task spec #1 must be a TaskSpec or dict"),
    ("batch-unknown-dep", MANY, lambda: [good(1), TaskSpec("echo", dependencies=["ghost"])], UnknownTaskError,
     "dependency ghost is not a known task"),
    # Errors only the store can see (existing id, duplicate, forward reference) must not
    # leave the earlier good specs of the batch submitted.
    ("batch-existing-id", MANY, lambda: [good(1), good(2), TaskSpec("echo", task_id=EXISTING)], SecurityError,
     "already exists"),
    ("batch-duplicate-id", MANY, lambda: [good(1), TaskSpec("echo", task_id="twin"), TaskSpec("echo", task_id="twin")],
     SecurityError, "twin"),
    ("batch-forward-ref", MANY, lambda: [good(1), TaskSpec("echo", task_id="early", dependencies=["late"]),
                                         TaskSpec("echo", task_id="late")], UnknownTaskError, "late"),
    ("batch-cycle", MANY, lambda: [TaskSpec("echo", task_id="c1", dependencies=["c2"]),
                                   TaskSpec("echo", task_id="c2", dependencies=["c1"]), good(1)],
     (UnknownTaskError, DependencyCycleError), "c"),
    ("batch-self-dep", MANY, lambda: [good(1), TaskSpec("echo", task_id="selfish", dependencies=["selfish"])],
     DependencyCycleError, "selfish"),
]


def _call(manager, how, arg):
    if how == S:
        if "task_id" in arg or "agent_id" in arg:  # not submit_task's: through the client with a TaskSpec
            return manager.client.submit(TaskSpec(**arg))
        return manager.submit_task(**arg)
    return manager.submit_many(arg())


@pytest.mark.parametrize("case,how,arg,error,text", PYTHON_CASES + BATCH_CASES, ids=[c[0] for c in PYTHON_CASES + BATCH_CASES])
def test_python_api_refuses_and_stores_nothing(env, redis_client, case, how, arg, error, text):
    before = snapshot(redis_client)
    with pytest.raises(error) as info:
        _call(env, how, arg)
    assert text in str(info.value), f"{case}: message {str(info.value)!r} does not say {text!r}"
    assert snapshot(redis_client) == before, f"{case}: the store changed although the call was refused"


OTHER_CASES = [
    ("register-bad-name", lambda m: m.register_module("bad name!", Echo()), SecurityError, "module name 'bad name!' is invalid"),
    ("register-not-module", lambda m: m.register_module("thing", object()), TypeError, "has no public methods to run as tasks"),
    ("register-twice", lambda m: m.register_module("echo", Echo()), ValueError, "already registered"),
    ("register-name-newline", lambda m: m.register_module("echo2\n", Echo()), SecurityError, "is invalid"),
    ("register-config-huge", lambda m: m.register_module("big", Echo(), {"prompt": "x" * 100_000}), SecurityError,
     "the limit is 65536"),
    ("register-config-nan", lambda m: m.register_module("nan", Echo(), {"x": math.nan}), SecurityError,
     "only finite numbers"),
    ("manager-timeout-inf", lambda m: ConcurrentModuleManager(max_workers=0, task_timeout=math.inf,
                                                              connection=m.connection), SecurityError, "task_timeout"),
    ("wait-unknown", lambda m: m.wait(["no-such-task"], timeout=1), UnknownTaskError, "unknown task id no-such-task"),
    ("result-unknown", lambda m: m.get_result("no-such-task", timeout=1), UnknownTaskError, "no-such-task"),
    ("pause-unknown", lambda m: m.pause_module("nope"), UnknownModuleError, "'nope' is not registered"),
]


@pytest.mark.parametrize("case,call,error,text", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_other_calls_refuse_and_store_nothing(env, redis_client, case, call, error, text):
    before = snapshot(redis_client)
    with pytest.raises(error) as info:
        call(env)
    assert text in str(info.value)
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("task_id", ["no-such-task", "bad id!", "", "x" * 200, CANCELLED])
def test_cancel_and_status_of_unknown_or_finished_ids_change_nothing(env, redis_client, task_id):
    before = snapshot(redis_client)
    assert env.cancel_task(task_id) is False
    if task_id != CANCELLED:
        assert env.get_task_status(task_id) is None
    assert snapshot(redis_client) == before


CLI_CASES = [
    ("cli-args-bad-json", ["submit", "echo", "run", "--args", "{bad"], "--args is not valid JSON"),
    ("cli-args-not-array", ["submit", "echo", "run", "--args", '{"a": 1}'], "--args must be a JSON array"),
    ("cli-args-number", ["submit", "echo", "run", "--args", "3"], "--args must be a JSON array, not int"),
    ("cli-kwargs-not-object", ["submit", "echo", "run", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
    ("cli-args-nan", ["submit", "echo", "run", "--args", "[NaN]"], "only finite numbers"),
    ("cli-unknown-module", ["submit", "nope"], "'nope' is not registered"),
    ("cli-private-method", ["submit", "echo", "__init__"], "private"),
    ("cli-bad-priority", ["submit", "echo", "run", "--priority", "urgent"], "Invalid value for '--priority'"),
    ("cli-priority-number", ["submit", "echo", "run", "--priority", "9"], "Invalid value for '--priority'"),
    ("cli-unknown-dep", ["submit", "echo", "run", "--depends-on", "ghost"], "dependency ghost is not a known task"),
    ("cli-bad-dep-id", ["submit", "echo", "run", "--depends-on", "a b"], "invalid task id 'a b'"),
    ("cli-allow-non-dep", ["submit", "echo", "run", "--allow-failure", EXISTING], "not dependencies"),
    ("cli-timeout-0", ["submit", "echo", "run", "--timeout", "0"], "timeout must be a positive number"),
    ("cli-timeout-str", ["submit", "echo", "run", "--timeout", "x"], "Invalid value for '--timeout'"),
    ("cli-retries-neg", ["submit", "echo", "run", "--retries", "-1"], "Invalid value for '--retries'"),
    ("cli-status-unknown", ["status", "no-such-task"], "unknown task id no-such-task"),
    ("cli-status-bad-id", ["status", "bad id!"], "unknown task id bad id!"),
    ("cli-cancel-unknown", ["cancel", "no-such-task"], "unknown task id no-such-task"),
    ("cli-cancel-ended", ["cancel", CANCELLED], f"task {CANCELLED} already ended cancelled"),
    ("cli-pause-unknown", ["pause", "nope"], "'nope' is not registered"),
]


@pytest.mark.parametrize("case,argv,text", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_and_stores_nothing(env, redis_client, case, argv, text):
    before = snapshot(redis_client)
    result = CliRunner().invoke(cli_main, argv)
    # click's own usage errors and FriendlyGroup exit 2, ClickException exits 1: any failure code will do
    assert result.exit_code in (1, 2), f"{case}: exit {result.exit_code}, output {result.output!r}, {result.exception!r}"
    assert "Traceback" not in result.output
    assert text in result.output, f"{case}: {result.output!r} does not say {text!r}"
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("check,value", [
    ("prefix", "piano\n"), ("state path", "goals\n"), ("state path", "emotional_state.happiness\n"),
    ("snapshot id", "snap\n"), ("agent id", "agent\n"), ("module name", "echo\n"),
])
def test_a_trailing_newline_is_not_a_valid_name(check, value):
    """Patterns once used re.match with "$", which also matches before a final newline."""
    from piano_dist.keys import Keys
    from piano_dist.security import SecurityValidator
    from piano_dist.state.paths import validate_agent_id, validate_snapshot_id, validate_state_path

    validate = {"prefix": Keys, "state path": validate_state_path, "snapshot id": validate_snapshot_id,
                "agent id": validate_agent_id, "module name": SecurityValidator.validate_module_name}[check]
    validate(value.rstrip("\n"))
    with pytest.raises(ValueError):
        validate(value)
