"""The Ray connection: a new local Ray on this machine, or a cluster joined by its address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data.shards import ScaleError


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """ray, initialised: a local Ray on this machine, or the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise ScaleError("Ray is not installed: pip install 'ray[data]==2.60.0' (listed in requirements.txt)") from None
    if ray.is_initialized():
        return ray
    if address and address != "auto":
        _reachable(address)
    core_dir = str(Path(__file__).resolve().parent)
    env = {"py_modules": [core_dir]} if address else {"env_vars": {"PYTHONPATH": str(Path(core_dir).parent)}}
    try:
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            # "local": always a new instance, never a cluster `ray start` left running on this machine
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env=env)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        hint = (" (a cluster with token authentication, the default of `ray start` since Ray 2.59, needs "
                "RAY_AUTH_MODE=token here and its token, from `ray get-auth-token` on the head, in "
                "~/.ray/auth_token or RAY_AUTH_TOKEN; on a node of the cluster, --address auto finds both)"
                ) if address else ""
        raise ScaleError(f"cannot reach a Ray cluster at {address or 'a new local instance'}: {exc}{hint}") from None
    from ray.data import DataContext

    DataContext.get_current().execution_options.preserve_order = True
    return ray

def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (ray.init would keep retrying)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ScaleError(f"cannot reach a Ray cluster at {address}: {exc}") from None
