"""Hosts that are really apart, on one machine: a bridge and network namespaces (``ip netns``).

The services listen on the bridge's address in the root namespace; each node of
a cluster runs in a namespace of its own, joined to the bridge by a veth pair.
Taking a node's end of the link down cuts it off from the services and from the
other nodes (a network partition) while its processes run on. Every name and
address is made here and removed afterwards; the traffic never leaves them.
Needs root (CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid


def available() -> str:
    """'' if namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return ""


def _ip(*args: str, ns: str = "") -> None:
    argv = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


class Bridge:
    """A bridge with the address ``host`` (x.y.z.1/24) in the root namespace; ``join`` adds namespaces."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]  # interface names: at most 15 characters
        self.name = f"yqbr{self.tag}"
        self.net = f"10.{random.randint(100, 250)}.{random.randint(1, 250)}"
        self.host = f"{self.net}.1"
        self.spaces: list[Namespace] = []
        _ip("link", "add", self.name, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.host}/24", "dev", self.name)
            _ip("link", "set", self.name, "up")
        except BaseException:
            self.remove()
            raise

    def join(self, name: str) -> Namespace:
        """A new namespace for node ``name``, on the bridge, with the next address."""
        ns = Namespace(self, f"{len(self.spaces)}{name}", f"{self.net}.{len(self.spaces) + 2}")
        self.spaces.append(ns)
        return ns

    def remove(self) -> None:
        for ns in self.spaces:
            ns.remove()
        subprocess.run(["ip", "link", "del", self.name], capture_output=True, timeout=30)


class Namespace:
    """A network namespace with one veth link to the bridge (its address ``ip``) and a loopback."""

    def __init__(self, bridge: Bridge, node: str, ip: str) -> None:
        self.name = f"yq{bridge.tag}{node}"
        self.ip = ip
        self.outer = f"yq{bridge.tag}{node}h"  # the root namespace's end, on the bridge
        inner = f"yq{bridge.tag}{node}n"
        _ip("netns", "add", self.name)
        _ip("link", "add", self.outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", self.name)
        _ip("link", "set", self.outer, "master", bridge.name)
        _ip("link", "set", self.outer, "up")
        _ip("addr", "add", f"{ip}/24", "dev", inner, ns=self.name)
        _ip("link", "set", inner, "up", ns=self.name)
        _ip("link", "set", "lo", "up", ns=self.name)

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self) -> None:
        """A network partition: nothing reaches this namespace, and nothing leaves it."""
        _ip("link", "set", self.outer, "down")

    def heal(self) -> None:
        _ip("link", "set", self.outer, "up")

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True, timeout=30)
