"""Reaching Ray: the import (with how to install it), the cluster, and whether a job fits it."""

from __future__ import annotations

import socket
import time
from typing import Any

from ...errors import UsageError


def require_ray() -> Any:
    """The `ray` module, or UsageError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError('Ray is not installed: pip install "qualaudit[ray]" (ray[data]) to '
                         "score on Ray, or leave out --engine ray") from None
    return ray


def connect(address: str | None, *, num_cpus: int | None = None,
            object_store_memory: int | None = None) -> float:
    """Connect to the Ray cluster at `address` (None: an existing one of this process, else a
    new local one); returns the seconds it took. An unreachable cluster is a UsageError."""
    ray = require_ray()
    start = time.perf_counter()
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=object_store_memory, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {address!r}" if address else "locally"
            raise UsageError(
                f"cannot reach a Ray cluster {where}: {exc}. Start one with `ray start --head` "
                "and pass its address (--ray-address HOST:6379), or leave --ray-address out to "
                "start a local one") from None
    return time.perf_counter() - start


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A cluster address that takes no TCP connection within `timeout` seconds is a UsageError
    now, not after Ray's own minutes of retrying."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot reach a Ray cluster at {address!r} ({exc}). Start one with `ray start "
            "--head` and pass its address (--ray-address HOST:6379), or leave --ray-address out "
            "to start a local one") from None


def check_cluster_fits(actors: int, cpus_per_actor: float, gpus_per_actor: float) -> None:
    """An actor pool larger than the cluster waits forever (and one that takes every CPU leaves
    none for the read and write tasks): refuse it up front."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if actors * cpus_per_actor + 1 > cpus:
        raise UsageError(
            f"{actors} actor(s) of {cpus_per_actor:g} CPU need {actors * cpus_per_actor + 1:g} "
            f"CPUs with one left for reading and writing; this Ray cluster has {cpus:g}. "
            "Use fewer --actors")
    if actors * gpus_per_actor > gpus:
        raise UsageError(f"{actors} actor(s) of {gpus_per_actor:g} GPU need "
                         f"{actors * gpus_per_actor:g} GPUs; this Ray cluster has {gpus:g}")
