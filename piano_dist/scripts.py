"""Load the Lua scripts in ``piano_dist/lua`` and register them with a client.

Each ``.lua`` file starts with a header naming its KEYS and ARGV and the transition it
performs. Scripts are registered through redis-py (EVALSHA with a fallback to EVAL), so
a restarted Redis that forgot them costs one extra round trip, not an error.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import redis


_INCLUDE = re.compile(r"^--!include (\w+)\s*$", re.MULTILINE)


def _read(*parts: str) -> str:
    return resources.files("piano_dist").joinpath("lua", *parts).read_text()


def lua_include(name: str) -> str:
    """The text of lua/includes/NAME.lua, for scripts assembled outside this package."""
    return _read("includes", f"{name}.lua")


@lru_cache(maxsize=None)
def lua_source(name: str) -> str:
    """A script's text with its ``--!include NAME`` lines replaced by lua/includes/NAME.lua."""
    return _INCLUDE.sub(lambda m: lua_include(m.group(1)), _read(f"{name}.lua"))


class ScriptSet:
    """Lazily registered scripts for one connection: ``scripts.claim(keys=…, args=…)``."""

    def __init__(self, connection: redis.Redis):
        self._connection = connection
        # Registered once per client, not per ScriptSet: memories, stores and worlds are
        # built per call, and each registration hashes the script's text again.
        scripts = getattr(connection, "_piano_scripts", None)
        if scripts is None:
            scripts = {}
            try:
                connection._piano_scripts = scripts
            except AttributeError:  # a client that takes no attributes: scripts per set
                pass
        self._scripts: dict[str, "LanedScript | redis.commands.core.Script"] = scripts

    def queue(self, pipe, name: str, keys: list, args: list) -> None:
        """Add a call of script ``name`` to ``pipe`` as a plain EVALSHA. (A pipeline given
        a Script object asks Redis ``SCRIPT EXISTS`` before every execute: one more
        round trip per batch.) A reply that is :class:`redis.exceptions.NoScriptError`
        (Redis restarted and forgot it) means the script did not run: :meth:`load` it,
        then call it again directly."""
        script = getattr(self, name)
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    def load(self, name: str) -> None:
        """Give Redis script ``name`` (SCRIPT LOAD). Calling a forgotten script directly
        would load it too, but only after an EVALSHA that Redis refuses: its arguments,
        a task's result among them, would cross the wire once more."""
        script = getattr(self, name)
        self._connection.script_load(script.script)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        script = self._scripts.get(name)
        if script is None:
            from .resources.lane import lane_for

            script = self._connection.register_script(lua_source(name))
            lane = lane_for(self._connection)
            if lane is not None:
                script = LanedScript(script, lane)
            self._scripts[name] = script
        return script


class LanedScript:
    """A registered script whose direct calls go through the client's connection lane
    (resources/lane.py): one EVALSHA on a connection kept aside, without the pool's
    checkout, stray-data poll and wrappers, which cost about a third of a call's CPU.
    Calls on a pipeline or another client (``client=``) are redis-py's own."""

    __slots__ = ("raw", "sha", "script", "_lane")

    def __init__(self, raw: redis.commands.core.Script, lane):
        self.raw = raw
        self.sha = raw.sha
        self.script = raw.script
        self._lane = lane

    def __call__(self, keys=None, args=None, client=None):
        if client is not None:
            return self.raw(keys=keys, args=args, client=client)
        return self._lane.run(self.raw, tuple(keys or ()), tuple(args or ()))

    def __getattr__(self, name: str):  # the rest of redis-py's Script (registered_client, …)
        return getattr(self.raw, name)
