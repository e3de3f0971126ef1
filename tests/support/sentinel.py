"""A Redis master, its replica and three sentinels watching them, all private to a test."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import redis

from piano_dist.embedded import find_redis_server, free_port

from .redis_server import RedisServer
from .waiting import wait_until

SERVICE = "piano"


class SentinelCluster:
    def __init__(self, password: str = "s3cret", down_after_ms: int = 1000, appendonly: bool = True):
        self.password = password
        self.down_after_ms = down_after_ms
        self.master = RedisServer(appendonly=appendonly, password=password, args=["--masterauth", password])
        self.replica = RedisServer(appendonly=appendonly, password=password, args=["--masterauth", password])
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen] = []
        self.directory = tempfile.mkdtemp(prefix="piano-test-sentinel-")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://:{self.password}@{hosts}/{SERVICE}"

    def start(self) -> "SentinelCluster":
        self.master.start()
        self.replica.extra_args += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        wait_until(lambda: self.replica.client().info("replication").get("master_link_status") == "up",
                   timeout=30, message="the replica in sync")
        for port in self.sentinel_ports:
            config = os.path.join(self.directory, f"sentinel-{port}.conf")
            with open(config, "w") as fh:
                fh.write(f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                         f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                         f"sentinel auth-pass {SERVICE} {self.password}\n"
                         f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                         f"sentinel failover-timeout {SERVICE} 10000\n"
                         f"sentinel parallel-syncs {SERVICE} 1\n")
            self.sentinels.append(subprocess.Popen([find_redis_server(), config, "--sentinel"],
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Every sentinel knows the replica and the two other sentinels before the test starts.
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            wait_until(lambda: _ready(client), timeout=60, message=f"sentinel {port} ready")
        return self

    def master_address(self) -> tuple[str, int] | None:
        for port in self.sentinel_ports:
            try:
                host, master_port = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(SERVICE)
                return host, int(master_port)
            except (redis.RedisError, TypeError):
                continue
        return None

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.sentinels:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.replica.close()
        self.master.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _ready(client: redis.Redis) -> bool:
    try:
        return (len(client.sentinel_slaves(SERVICE)) >= 1 and len(client.sentinel_sentinels(SERVICE)) >= 2)
    except redis.RedisError:
        return False
