"""No network for a test: every name lookup and internet connection is recorded and refused.

In the test's process through ``refusing`` (and pytest's monkeypatch); in the processes a
test starts (Snakemake and its jobs) through ``guarded_environment``, whose
``sitecustomize`` installs the same refusals at each Python start and records each attempt
in a file, so that a test can assert that nothing tried.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

INTERNET = (socket.AF_INET, socket.AF_INET6)
REFUSED = "network refused by the test"


def refusing(record: Callable[[str], None]) -> dict[str, Any]:
    """Replacements of ``socket.getaddrinfo`` and ``socket.socket.connect`` that record each
    attempt and refuse it as a machine without network does (no name resolves, no
    connection is accepted); local sockets (``AF_UNIX``) still connect."""
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, REFUSED)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family not in INTERNET:
            return real_connect(self, address)
        record(f"connect {address!r}")
        raise ConnectionRefusedError(111, REFUSED)

    return {"getaddrinfo": getaddrinfo, "connect": connect}


def install(log: Path) -> None:
    """Refuse the network in this process for good, appending each attempt to ``log``."""

    def record(attempt: str) -> None:
        with open(log, "a") as stream:
            stream.write(f"{os.getpid()} {attempt}\n")

    replacements = refusing(record)
    socket.getaddrinfo = replacements["getaddrinfo"]
    socket.socket.connect = replacements["connect"]


def guarded_environment(folder: Path, log: Path) -> dict[str, str]:
    """Environment variables under which every Python process refuses the network and
    records its attempts in ``log`` (a ``sitecustomize`` in ``folder``, first on the path)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "network_guard.py").write_text(Path(__file__).read_text())
    (folder / "sitecustomize.py").write_text(
        "import pathlib\nimport network_guard\n\n"
        f"network_guard.install(pathlib.Path({str(log)!r}))\n"
    )
    path = [str(folder), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
