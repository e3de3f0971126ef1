"""Read who holds and who waits for what, straight from Redis (any process, the CLI)."""
from __future__ import annotations

import json

import redis

from ..keys import Keys
from ..replies import as_text
from ..scripts import ScriptSet


def redis_now_ms(connection: redis.Redis) -> int:
    sec, usec = connection.time()
    return int(sec) * 1000 + int(usec) // 1000


def registered_resources(connection: redis.Redis, keys: Keys) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in connection.hgetall(keys.resource_registry).items()}


def resource_status(connection: redis.Redis, keys: Keys, resource_id: str,
                    resource_type: str | None, now_ms: int | None = None) -> dict:
    """Live holders (lease not lapsed) and queued requests of one resource."""
    now_ms = redis_now_ms(connection) if now_ms is None else now_ms
    pipe = connection.pipeline(transaction=False)
    pipe.zrange(keys.resource_part(resource_id, "holders"), 0, -1, withscores=True)
    pipe.hgetall(keys.resource_part(resource_id, "locks"))
    pipe.zrange(keys.resource_part(resource_id, "queue"), 0, -1)
    pipe.hgetall(keys.resource_part(resource_id, "waiters"))
    pipe.get(keys.resource_fence(resource_id))
    holders, infos, queue, waiter_infos, fence = pipe.execute()

    locks = []
    for lock_id, expiry in holders:
        if expiry < now_ms:
            continue
        raw = infos.get(lock_id)
        info = json.loads(raw) if raw else {}
        locks.append({
            "lock_id": as_text(lock_id),
            "holder": info.get("holder"),
            "mode": info.get("mode"),
            "acquired_at": info.get("acquired_at", 0) / 1000.0,
            "expires_at": expiry / 1000.0,
            "fence": info.get("fence"),
            "owner": info.get("owner"),
        })
    waiters = []
    for waiter_id in queue:
        raw = waiter_infos.get(waiter_id)
        info = json.loads(raw) if raw else {}
        waiters.append({
            "lock_id": as_text(waiter_id),
            "holder": info.get("holder"),
            "mode": info.get("mode"),
            "waiting_since": info.get("since", 0) / 1000.0,
            "owner": info.get("owner"),
        })
    writer = next((lk["holder"] for lk in locks if lk["mode"] != "read"), None)
    return {
        "resource_id": resource_id,
        "resource_type": resource_type,
        "active_locks": len(locks),
        "readers": [lk["holder"] for lk in locks if lk["mode"] == "read"],
        "writer": writer,
        "waiting_requests": len(waiters),
        "waiters": waiters,
        "locks": locks,
        "fence": int(fence) if fence is not None else 0,
    }


def all_resource_status(connection: redis.Redis, keys: Keys) -> list[dict]:
    now_ms = redis_now_ms(connection)
    registry = registered_resources(connection, keys)
    return [resource_status(connection, keys, rid, kind, now_ms) for rid, kind in sorted(registry.items())]


def release_lock(connection: redis.Redis, keys: Keys, lock_id: str, scripts: ScriptSet | None = None) -> bool:
    """Release a lock by id from any process (operators). False if it is not held.

    The resource's fencing token is bumped with it: the holder the lock was taken from
    may still be running, and its next fenced write must be refused."""
    base = connection.hget(keys.lock_index, lock_id)
    if base is None:
        return False
    scripts = scripts or ScriptSet(connection)
    return bool(scripts.lock_release(keys=[as_text(base), keys.lock_index, keys.lock_waitfor], args=[lock_id, "fence"]))
