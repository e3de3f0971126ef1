"""Redis URLs: the Sentinel form redis-py does not parse, URLs rebuilt from a client,
and URLs safe to print.

Forms every component accepts (``PIANO_REDIS_URL``, ``--redis-url``, ``redis_url=``):

- ``redis://[[user]:password@]host[:port][/db][?option=value…]``
- ``rediss://…`` the same over TLS; ``?ssl_ca_certs=/path/ca.crt`` names the CA that
  signed the server's certificate, ``ssl_certfile``/``ssl_keyfile`` a client
  certificate, ``ssl_cert_reqs=none`` turns verification off;
- ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``;
- ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db][?…]``
  (``rediss+sentinel://`` for TLS): the master of ``service_name`` as the sentinels
  name it. The credentials are the data nodes'; ``sentinel_username`` and
  ``sentinel_password`` query options give the sentinels' own, if they have them.

User names and passwords are percent-encoded (``p@ss/w`` is ``p%40ss%2Fw``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Options of a Sentinel URL that configure the connections to the sentinels.
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
# Connection options a client may carry that a URL can express (redis-py parses them back).
_URL_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
                "ssl_check_hostname", "ssl_password", "ssl_min_version", "protocol")


def url_scheme(url: str) -> str:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def is_sentinel_url(url: str) -> bool:
    return url_scheme(url) in SENTINEL_SCHEMES


@dataclass
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: list[tuple[str, int]]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_kwargs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # other query options, for the data nodes


def _split_host_port(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in host {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after host [{host}]")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"empty host in {text!r}")
    if port_text == "":
        return unquote(host), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port {port_text!r} for host {host!r}")
    return unquote(host), int(port_text)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse ``redis+sentinel://[user:pass@]h1:p1[,h2:p2…]/service[/db][?options]``,
    raising ValueError that names what is wrong."""
    scheme = url_scheme(url)
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL (scheme {scheme or 'missing'}): use redis+sentinel://")
    rest = url[len(scheme) + 3:]
    rest, _, query = rest.partition("?")
    rest, _, fragment = rest.partition("#")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hosts:
        raise ValueError("Sentinel URL names no sentinel: redis+sentinel://host:26379/service_name")
    sentinels = [_split_host_port(h, DEFAULT_SENTINEL_PORT) for h in hosts.split(",") if h]
    parts = [p for p in path.split("/") if p] if slash else []
    if not parts:
        raise ValueError("Sentinel URL names no service: redis+sentinel://host:26379/service_name")
    if len(parts) > 2:
        raise ValueError(f"Sentinel URL path must be /service_name[/db], not /{path}")
    service = unquote(parts[0])
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"Sentinel URL database must be a number, not {parts[1]!r}")
        db = int(parts[1])
    options = dict(parse_qsl(query, keep_blank_values=True))
    if "db" in options:
        if not options["db"].isdigit():
            raise ValueError(f"db must be a number, not {options['db']!r}")
        db = int(options.pop("db"))
    sentinel_kwargs = {}
    if "sentinel_username" in options:
        sentinel_kwargs["username"] = options.pop("sentinel_username")
    if "sentinel_password" in options:
        sentinel_kwargs["password"] = options.pop("sentinel_password")
    return SentinelTarget(sentinels, service, db, username, password, scheme == "rediss+sentinel",
                          sentinel_kwargs, options)


def _userinfo(username: str | None, password: str | None) -> str:
    if not username and not password:
        return ""
    user = quote(username or "", safe="")
    return f"{user}:{quote(password, safe='')}@" if password else f"{user}@"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else quote(host, safe="")


def _query(options: dict) -> str:
    shown = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()
             if v is not None}
    return f"?{urlencode(shown)}" if shown else ""


def url_from_kwargs(kwargs: dict, ssl: bool = False) -> str:
    """A redis://, rediss:// or unix:// URL for a connection pool's keyword arguments."""
    auth = _userinfo(kwargs.get("username"), kwargs.get("password"))
    db = int(kwargs.get("db") or 0)
    if kwargs.get("path"):
        options = {"db": db} if db else {}
        return f"unix://{auth}{quote(kwargs['path'], safe='/')}{_query(options)}"
    options = {k: kwargs.get(k) for k in _URL_OPTIONS if kwargs.get(k) is not None} if ssl else {}
    if "protocol" in kwargs and kwargs["protocol"] not in (None, 2, "2"):
        options["protocol"] = kwargs["protocol"]
    if options.get("ssl_cert_reqs") is not None and not isinstance(options["ssl_cert_reqs"], str):
        import ssl as ssl_module

        options["ssl_cert_reqs"] = {ssl_module.CERT_NONE: "none", ssl_module.CERT_OPTIONAL: "optional",
                                    ssl_module.CERT_REQUIRED: "required"}[options["ssl_cert_reqs"]]
    scheme = "rediss" if ssl else "redis"
    host = kwargs.get("host") or "localhost"
    return f"{scheme}://{auth}{_host(host)}:{int(kwargs.get('port') or 6379)}/{db}{_query(options)}"


def sentinel_url(sentinels: list[tuple[str, int]], service_name: str, kwargs: dict,
                 sentinel_kwargs: dict | None = None, ssl: bool = False) -> str:
    """A redis+sentinel:// URL for sentinels, a service and the data nodes' options."""
    auth = _userinfo(kwargs.get("username"), kwargs.get("password"))
    hosts = ",".join(f"{_host(h)}:{int(p)}" for h, p in sentinels)
    options = {k: kwargs.get(k) for k in _URL_OPTIONS if kwargs.get(k) is not None} if ssl else {}
    for name, key in (("sentinel_username", "username"), ("sentinel_password", "password")):
        if (sentinel_kwargs or {}).get(key):
            options[name] = sentinel_kwargs[key]
    db = int(kwargs.get("db") or 0)
    scheme = "rediss+sentinel" if ssl else "redis+sentinel"
    return f"{scheme}://{auth}{hosts}/{quote(service_name, safe='')}{f'/{db}' if db else ''}{_query(options)}"


_SECRET_OPTION = re.compile(r"((?:^|[?&])(?:sentinel_password|ssl_password|password)=)[^&#]*")


def redact(url: str) -> str:
    """The URL with its passwords replaced by ``***``, for logs and messages."""
    scheme = url_scheme(url)
    if not scheme:
        return url
    head, rest = url[:len(scheme) + 3], url[len(scheme) + 3:]
    netloc_end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found >= 0:
            netloc_end = min(netloc_end, found)
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = (f"{user}:***" if colon else user) + "@" + hosts
    return head + netloc + _SECRET_OPTION.sub(r"\1***", tail)
