"""What a run records about where it ran: code version, Python/torch/CUDA versions, host; process liveness."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from labcon.core.allocator import host_memory


@functools.cache
def hostname() -> str:
    """This machine's host name (runs are recovered only by the host that started them)."""
    return socket.gethostname()


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def code_version() -> str:
    """`git describe` of the labcon checkout when it is one, else 'labcon <package version>'."""
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "describe", "--always", "--dirty", "--tags"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"labcon {_package_version('labcon') or 'unknown'}"


def environment() -> dict[str, Any]:
    """Python, torch and CUDA versions, device and host; never imports torch just to ask."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": hostname(),
        "torch": _package_version("torch"),
        "host_memory": host_memory(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = str(torch.__version__)
        env["cuda"] = torch.version.cuda
        try:
            if torch.cuda.is_available():
                env["gpu"] = torch.cuda.get_device_name(0)
        except RuntimeError:
            env["gpu"] = None
    return env


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True
