"""A module for trying the command line (README, "Command line"): `greeter` greets.

    python examples/greeter.py          # registers module "greeter" cluster-wide

Workers build it from its registration (class examples.greeter:Greeter), so they need
this directory on their PYTHONPATH and `examples` among PIANO_ALLOWED_MODULES.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a script: make `examples.greeter` the class's import path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from examples.greeter import Greeter, register

    register()
    sys.exit(0)

from piano_dist import BaseModule


class Greeter(BaseModule):
    def run(self, name="world"):
        return f"hello, {name}"

    def fail(self, why="on purpose"):
        raise RuntimeError(f"greeter failed {why}")


def register() -> None:
    from piano_dist import ConcurrentModuleManager

    manager = ConcurrentModuleManager(max_workers=0)
    try:
        if "greeter" not in manager.client.registry.names():
            manager.register_module("greeter", Greeter())
        print("registered greeter (examples.greeter:Greeter)")
    finally:
        manager.shutdown()
