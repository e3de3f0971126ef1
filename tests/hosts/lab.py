"""Machines on one box: Linux network namespaces joined by a bridge.

A lab is a "switch" namespace holding a bridge, and one namespace per host with a veth
pair whose other end is on the bridge. Every name starts with ``hosts`` (namespaces,
interfaces), the addresses are a private /24 that exists only inside these namespaces,
and ``close`` ends the processes started in them and deletes every namespace (which
deletes their links). Needs root (CI runs as root).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field


def _ip(*args: str) -> str:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def namespaces_available() -> str | None:
    """None when the lab can be built here, else why not."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"hosts{random.randrange(16 ** 6):06x}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"cannot create a network namespace: {exc}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Host:
    lab: "Lab"
    role: str
    namespace: str
    address: str
    procs: list = field(default_factory=list)

    def command(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def popen(self, args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
        """Start ``args`` in this host's namespace (``ip netns exec`` execs it: the Popen's
        pid is the command's own)."""
        proc = subprocess.Popen(self.command(args), env=env, **kw)
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args), env=env, capture_output=True, text=True, timeout=timeout)

    def stop_all(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()


class Lab:
    def __init__(self):
        self.tag = f"hosts{random.randrange(16 ** 4):04x}"
        # 10.(200-249).(0-255).0/24: private, and only ever configured inside our namespaces.
        self.subnet = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
        self.switch = f"{self.tag}-sw"
        self.bridge = f"{self.tag}br"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []

    def __enter__(self) -> "Lab":
        try:
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", self.bridge, "type", "bridge")
            _ip("-n", self.switch, "link", "set", self.bridge, "up")
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, role: str) -> Host:
        number = len(self.hosts) + 1
        namespace = f"{self.tag}-{role}"
        inside, outside = f"{self.tag}{number}a", f"{self.tag}{number}b"
        address = f"{self.subnet}.{number}"
        self._add_namespace(namespace)
        _ip("-n", namespace, "link", "add", inside, "type", "veth", "peer", "name", outside, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", outside, "master", self.bridge)
        _ip("-n", self.switch, "link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        host = Host(self, role, namespace, address)
        self.hosts[role] = host
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop_all(signal.SIGKILL, timeout=10)
        for name in reversed(self._namespaces):
            # Anything still running in the namespace was started by this lab.
            try:
                pids = _ip("netns", "pids", name).split()
            except RuntimeError:
                pids = []
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            deadline = time.monotonic() + 10
            while True:
                try:
                    _ip("netns", "del", name)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        self._namespaces.clear()
        self.hosts.clear()
