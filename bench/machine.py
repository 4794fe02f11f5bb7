"""What the benchmark ran on: CPU, memory, OS, Python, service and library versions."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.common import ROOT

LIBRARIES = ("yadtq", "kafka-python", "redis", "psutil", "celery", "kombu", "huey", "matplotlib")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    return platform.platform()


def kafka_version(servers: str) -> str:
    """The running broker's version: from the kafka_2.13-X.jar on a local broker's class
    path if one runs here, else the API version kafka-python infers from the broker."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "kafka.Kafka" in cmd:
            for entry in re.findall(r"-cp (\S+)", cmd):
                for jar in _glob_classpath(entry):
                    if m := re.fullmatch(r"kafka_[\d.]+-([\d.]+)\.jar", jar.name):
                        return m.group(1)
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=servers)
        try:
            version = admin._client.check_version()
        finally:
            admin.close()
        return "API " + ".".join(map(str, version))
    except Exception as e:
        return f"unknown ({type(e).__name__})"


def _glob_classpath(entry: str) -> list[Path]:
    paths: list[Path] = []
    for part in entry.split(":"):
        p = Path(part)
        paths += list(p.parent.glob(p.name)) if "*" in part else [p]
    return paths


def redis_version(url: str) -> str:
    try:
        r = redis.Redis.from_url(url)
        try:
            return str(r.info("server")["redis_version"])  # type: ignore[index]
        finally:
            r.close()
    except redis.RedisError as e:
        return f"unknown ({type(e).__name__})"


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe(kafka: str, redis_url: str) -> dict[str, Any]:
    """Everything about this machine and its software that a reader needs to compare runs."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": os_name(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kafka": kafka_version(kafka),
        "redis": redis_version(redis_url),
        "libraries": library_versions(),
        "yadtq_commit": git_commit(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
