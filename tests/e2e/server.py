"""Run `spire serve` as a real process, for tests that kill it or talk to it over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SPIRE = str(Path(sys.executable).with_name("spire"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SpireServer:
    """One `spire serve` process on a free loopback port, with its own store."""

    def __init__(self, database_url: str, log_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "SPIRE_DATABASE_URL": database_url,
            "SPIRE_PORT": str(self.port),
            "SPIRE_RATE_LIMIT": "1000000/minute",
            **{f"SPIRE_{k.upper()}": v for k, v in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.api_key = _admin_key(database_url)
        self.env["SPIRE_API_KEY"] = self.api_key
        self.headers = {"X-API-Key": self.api_key}

    def http(self) -> httpx.Client:
        """An HTTP client for this server that sends the admin key."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)

    def start(self, timeout: float = 30.0) -> SpireServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [SPIRE, "serve", "--log-level", "info"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"spire serve exited early; see {self.log_path}")
            try:
                health = f"{self.url}/api/v1/tasks/system/health"
                if httpx.get(health, headers=self.headers, timeout=1).is_success:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"spire serve did not answer within {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease release, exactly like a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `spire ARGS` against this server."""
        env = {**self.env, "SPIRE_API_URL": self.url, "COLUMNS": "200"}
        return subprocess.run(
            [SPIRE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )


def _admin_key(database_url: str) -> str:
    """Create the first admin directly in the store (as `spire admin bootstrap` would)."""
    from phantom_spire.runtime import Runtime
    from phantom_spire.services.identity import SYSTEM
    from phantom_spire.settings import Settings

    runtime = Runtime(Settings(database_url=database_url))
    try:
        created = runtime.identity.bootstrap_admin()
        if created is not None:
            return created[1]
        return runtime.identity.issue_key(SYSTEM, "admin", label="tests")[1]
    finally:
        runtime.close()
