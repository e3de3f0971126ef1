"""The embedded Redis: a random password kept in PIANO_HOME (0600), bound to 127.0.0.1,
and the same port after `piano-dist redis stop` / `start`, so running workers carry on."""
from __future__ import annotations

import socket
import stat

import pytest
import redis
from support.foundation import run_cli
from support.waiting import wait_until
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager
from piano_dist.embedded import EmbeddedRedis


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "piano-home"
    env = {"PIANO_HOME": str(home), "PIANO_REDIS_URL": None, "REDIS_URL": None}
    yield home, env
    run_cli(["redis", "stop"], None, env=env, cwd=str(tmp_path))


def _cli(args, env, cwd):
    result = run_cli(args, None, env=env, cwd=str(cwd))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_embedded_redis_requires_its_password_and_listens_on_loopback_only(home, tmp_path):
    home_dir, env = home
    url = _cli(["redis", "start"], env, tmp_path)
    password = (home_dir / "redis.password").read_text().strip()
    assert len(password) >= 24 and f":{password}@127.0.0.1:" in url
    for name in ("redis.password", "redis.url", "redis.conf"):
        assert stat.S_IMODE((home_dir / name).stat().st_mode) == 0o600, name
    assert password not in " ".join(_cmdline_of_server(home_dir))  # not visible in `ps`
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    client = redis.Redis.from_url(url)
    assert client.ping()
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("protected-mode")["protected-mode"] == "yes"
    client.close()


def test_embedded_redis_keeps_task_records_and_agent_logs_compact(home, tmp_path):
    """The settings README's Performance section recommends: a task record stays one
    listpack, an agent's change log of a dozen ~0.5 KB entries one stream node."""
    _, env = home
    client = redis.Redis.from_url(_cli(["redis", "start"], env, tmp_path))
    assert int(client.config_get("hash-max-ziplist-value")["hash-max-ziplist-value"]) == 256
    assert int(client.config_get("stream-node-max-bytes")["stream-node-max-bytes"]) == 8192
    for n in range(14):
        client.xadd("log", {"old": "o" * 250, "new": "n" * 250, "n": n})
    assert client.xinfo_stream("log")["radix-tree-keys"] == 1
    client.close()


def _cmdline_of_server(home_dir) -> list[str]:
    pid = int((home_dir / "redis.pid").read_text().strip())
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [part.decode() for part in fh.read().split(b"\0") if part]


def test_the_embedded_redis_keeps_its_url_and_running_workers_carry_on(home, tmp_path):
    home_dir, env = home
    url = _cli(["redis", "start"], env, tmp_path)
    worker = WorkerProcess(url, concurrency=2)
    manager = None
    try:
        manager = ConcurrentModuleManager(max_workers=0, redis_url=url)
        from support.sample_modules import Echo

        manager.register_module("echo", Echo())
        first = manager.submit_task("echo", "run", args=("before",))
        assert manager.get_result(first, timeout=30) is not None
        assert _cli(["redis", "stop"], env, tmp_path) == "stopped"
        assert _cli(["redis", "start"], env, tmp_path) == url   # same port, same password
        second = manager.submit_task("echo", "run", args=("after",))
        assert manager.get_result(second, timeout=60) is not None
        assert worker.alive()
    finally:
        if manager is not None:
            manager.shutdown()
        worker.stop()


def test_a_taken_port_moves_the_embedded_redis_and_says_so(home, tmp_path):
    home_dir, env = home
    url = _cli(["redis", "start"], env, tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert _cli(["redis", "stop"], env, tmp_path) == "stopped"
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port may be in TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_cli(["redis", "start"], None, env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"port {port} of the embedded Redis is taken" in result.stderr
    moved = result.stdout.strip()
    assert moved != url and redis.Redis.from_url(moved).ping()


def test_the_announcement_does_not_print_the_password(tmp_path):
    embedded = EmbeddedRedis(tmp_path / "home")
    try:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            url = embedded.ensure_running()
        password = (tmp_path / "home" / "redis.password").read_text().strip()
        assert "started embedded Redis at redis://:***@127.0.0.1:" in err.getvalue()
        assert password not in err.getvalue() and password in url
    finally:
        embedded.stop()
    wait_until(lambda: embedded.running_url() is None, message="the embedded Redis stopped")
