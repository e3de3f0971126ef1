"""Redis URLs: every form round-trips through a client, Sentinel URLs parse, passwords
never reach a message. No server needed (clients connect lazily)."""
import pytest

from piano_dist.connection import client_for_url, connection_url, describe
from piano_dist.redis_url import parse_sentinel_url, redact

URLS = [
    "redis://127.0.0.1:6380/2",
    "redis://:p%40ss%2Fw@127.0.0.1:6380/0",                      # the demo's `p@ss/w`
    "redis://alice:s%3Ac%23r%20t@redis-host:6379/1",              # an ACL user
    "redis://alice@redis-host:6379/0",                            # user without password
    "rediss://bob:pw@redis.example:6390/0?ssl_ca_certs=%2Fetc%2Fca+dir%2Fca.crt&ssl_cert_reqs=required",
    "rediss://redis.example:6390/0?ssl_cert_reqs=none",
    "rediss://:pw@10.0.0.5:6390/3?ssl_ca_certs=%2Fca.crt&ssl_certfile=%2Fc.crt&ssl_keyfile=%2Fc.key",
    "unix:///tmp/redis%20dir/redis.sock",
    "unix://:p%40ss@/tmp/redis.sock?db=3",
    "redis://[::1]:6379/0",
    "redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2:26380/mymaster/2",
    "redis+sentinel://alice:pw@sentinel-a:26379/cache?sentinel_password=s%40cret",
]

# The options that decide where and how a client connects.
_WHERE = ("host", "port", "db", "username", "password", "path", "ssl_ca_certs", "ssl_certfile",
          "ssl_keyfile", "ssl_cert_reqs")


def _where(client):
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    where = {k: kwargs.get(k) for k in _WHERE}
    where["class"] = pool.connection_class.__name__
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        where["service"] = pool.service_name
        where["sentinels"] = [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                              for s in manager.sentinels]
        where["sentinel_password"] = manager.sentinel_kwargs.get("password")
    return where


@pytest.mark.parametrize("url", URLS)
def test_connection_url_gives_back_the_url_a_client_was_made_from(url):
    client = client_for_url(url)
    assert connection_url(client) == url


@pytest.mark.parametrize("url", URLS)
def test_a_url_rebuilt_from_a_clients_options_connects_the_same_way(url):
    # A client made elsewhere (connection=…) has no URL to give back: it is rebuilt.
    client = client_for_url(url)
    del client.connection_pool.piano_url
    rebuilt = connection_url(client)
    assert _where(client_for_url(rebuilt)) == _where(client)
    if "ssl" in url or "rediss" in url:
        assert rebuilt.startswith("rediss")


def test_percent_encoded_password_reaches_redis_decoded():
    client = client_for_url("redis://:p%40ss%2Fw@127.0.0.1:6380/0")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["password"] == "p@ss/w" and kwargs["host"] == "127.0.0.1"


def test_sentinel_url_parses_hosts_service_db_and_both_credentials():
    target = parse_sentinel_url("redis+sentinel://alice:p%40ss@a:26379,b,[::1]:26381/mymaster/4"
                                "?sentinel_password=x&socket_timeout=2")
    assert target.sentinels == [("a", 26379), ("b", 26379), ("::1", 26381)]
    assert (target.service_name, target.db, target.username, target.password) == ("mymaster", 4, "alice", "p@ss")
    assert target.sentinel_kwargs == {"password": "x"}
    assert target.options == {"socket_timeout": "2"}
    assert parse_sentinel_url("rediss+sentinel://h:1/svc").ssl


@pytest.mark.parametrize("url, words", [
    ("redis+sentinel://", "no sentinel"),
    ("redis+sentinel://h:26379", "no service"),
    ("redis+sentinel://h:26379/", "no service"),
    ("redis+sentinel://h:99999/svc", "invalid port"),
    ("redis+sentinel://h:26379/svc/x", "database must be a number"),
    ("redis+sentinel://h:26379/svc/1/2", "/service_name[/db]"),
])
def test_a_bad_sentinel_url_is_refused_with_a_reason(url, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_sentinel_url(url)


def test_an_unknown_scheme_is_refused_naming_the_forms_without_the_password():
    with pytest.raises(ValueError) as info:
        client_for_url("http://:secret@host:6379/0")
    assert "redis+sentinel://" in str(info.value) and "secret" not in str(info.value)


@pytest.mark.parametrize("url, shown", [
    ("redis://:p%40ss%2Fw@h:1/0", "redis://:***@h:1/0"),
    ("redis://alice:pw@h:1/0", "redis://alice:***@h:1/0"),
    ("redis://alice@h:1/0", "redis://alice@h:1/0"),
    ("unix://:pw@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1"),
    ("redis+sentinel://u:pw@a:1,b:2/m?sentinel_password=s&x=1", "redis+sentinel://u:***@a:1,b:2/m?sentinel_password=***&x=1"),
    ("rediss://h:1/0?ssl_password=k", "rediss://h:1/0?ssl_password=***"),
])
def test_redact_hides_every_password(url, shown):
    assert redact(url) == shown


def test_describe_names_the_server_without_its_password():
    assert describe(client_for_url("redis://:hunter2@h:6379/0")) == "redis://:***@h:6379/0"
