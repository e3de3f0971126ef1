"""A few connections kept aside for direct script calls: the coordinator's two hot
scripts (acquire, release) on a lane of its own, every other ScriptSet call on its
client's shared lane (``lane_for``).

Each acquire and each release is one EVALSHA. Through ``Redis.execute_command`` every
call also checks a connection out of the pool (which polls the socket for stray data
first), runs the retry and observability wrappers and checks it back in: on a 2-core
machine about as long as the round trip itself. A lane keeps its own connections
(taken from the client's pool, so the pool still counts and can close them) on a
free list; a call pops one, sends, reads the reply and pushes it back.

Safety as in the pool: a connection that saw any exception other than a script error
is disconnected before it is reused (redis-py also disconnects on a failed read or
send), so no reply is ever read by the wrong call; after a fork the child drops the
parent's connections; a connection error or a transient reply (BUSY, OOM, …) falls
back to the client's ordinary call (with its retry policy), and a Redis that forgot
the script gets it loaded again.
"""
from __future__ import annotations

import os
import threading

import redis
from redis.exceptions import NoScriptError

from ..retry_policy import RedisRetry, is_transient

_shared_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _shared_lock  # a fork while another thread held it must not leave it held forever
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def lane_for(client: redis.Redis) -> "ScriptLane | None":
    """The lane every ScriptSet call on ``client``'s pool shares, made on first use and
    kept with the pool (clients sharing a pool share it: a lane per client would hold
    connections of its own). None for a client whose retry policy is not piano-dist's
    with a deadline (a caller's own client, a quick check with no retries): a lane falls
    back to an ordinary call after a lost reply, which repeats a script exactly where
    that policy would, and only there."""
    pool = client.connection_pool
    retry = pool.connection_kwargs.get("retry")
    if not isinstance(retry, RedisRetry) or retry.deadline <= 0:
        return None
    lane = getattr(pool, "_piano_lane", None)
    if lane is None:
        with _shared_lock:
            lane = getattr(pool, "_piano_lane", None)
            if lane is None:
                lane = ScriptLane(client)
                try:
                    pool._piano_lane = lane
                except AttributeError:  # a pool that takes no attributes: no lane
                    return None
    return lane


class ScriptLane:
    def __init__(self, client: redis.Redis):
        self._client = client
        self._pool = client.connection_pool
        self._spare: list = []
        self._pid = os.getpid()
        self._closed = False

    def run(self, script, keys: tuple, args: tuple):
        """The script's reply, like ``script(keys=keys, args=args)``. ``script``: a
        redis-py Script, or a ScriptSet's (its ``raw`` Script is what a fallback calls)."""
        script = getattr(script, "raw", script)
        if self._closed:
            return script(keys=list(keys), args=list(args))
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours
            self._spare, self._pid = [], os.getpid()
        try:
            conn = self._spare.pop()  # atomic under the GIL: no two threads get one connection
        except IndexError:
            conn = self._checkout()
        try:
            if getattr(conn, "_sock", True) is None:
                # Connect once here: the ordinary call below, on failure, is what waits
                # out the retry deadline (sending would reconnect under a deadline of its own).
                try:
                    conn.connect_check_health(retry_socket_connect=False)
                except (AttributeError, TypeError):  # redis-py before 6: sending connects
                    pass
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            reply = conn.read_response()
        except NoScriptError:  # the reply was read whole: the connection is clean
            self._give_back(conn)
            # Load it first: Script.__call__ would send the refused EVALSHA once more.
            script.registered_client.script_load(script.script)
            return script(keys=list(keys), args=list(args))
        except redis.ResponseError as exc:
            self._give_back(conn)
            if is_transient(exc):  # BUSY, OOM, …: not run; the client's retry policy waits it out
                return script(keys=list(keys), args=list(args))
            raise
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()
            self._give_back(conn)
            return script(keys=list(keys), args=list(args))
        except BaseException:
            conn.disconnect()
            self._give_back(conn)
            raise
        self._give_back(conn)
        return reply

    def close(self) -> None:
        """Give the connections back to the client's pool. Later calls use the pool."""
        self._closed = True
        spare, self._spare = self._spare, []
        if self._pid == os.getpid():
            for conn in spare:
                self._pool.release(conn)

    def _checkout(self):
        try:
            return self._pool.get_connection()
        except TypeError:  # redis-py 5 wants a command name
            return self._pool.get_connection("EVALSHA")

    def _give_back(self, conn) -> None:
        if self._closed:
            if self._pid == os.getpid():
                self._pool.release(conn)
        else:
            self._spare.append(conn)
