"""`hub up` runs one `hub deliver` beside its workers (which then only decide), restarts it when it dies and
stops it with everything else. The deliveries themselves: tests/sharing/test_deliverer.py and tests/scenarios."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hub.kafka.broker import free_port
from tests.support import children_of, hub_env, pid_alive, ready, spawn, stop, wait_until

pytestmark = pytest.mark.broker


def command(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def environment(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def hub_children(pid: int, role: bytes) -> list[int]:
    return [p for p in children_of(pid) if role in command(p)]


def test_hub_up_runs_one_deliverer_restarts_it_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "hub.log"
    proc = spawn(["up"], hub_env(data_dir=tmp_path / "data", api_port=port), log)
    try:
        wait_until(lambda: ready(base) or proc.poll() is not None, 60, "hub up to be ready")
        assert proc.poll() is None, log.read_text()[-3000:]
        (worker,) = hub_children(proc.pid, b"worker")
        (deliverer,) = hub_children(proc.pid, b"deliver")
        assert b"HUB_DELIVERY_MODE=process" in environment(worker)  # the worker only decides

        os.kill(deliverer, signal.SIGKILL)
        (again,) = wait_until(lambda: [p for p in hub_children(proc.pid, b"deliver") if p != deliverer], 20,
                              "a new deliverer")
        wait_until(lambda: log.read_text().count("sharing.deliverer_started") == 2, 30, "the new deliverer's loop")
        children = children_of(proc.pid)
        assert again in children
    finally:
        code = stop(proc, signal.SIGTERM)
    assert code == 0, log.read_text()[-3000:]
    for pid in children:
        wait_until(lambda pid=pid: not pid_alive(pid), 10, f"child {pid} to exit")
    text = log.read_text()
    assert "stack.deliverer_restarted" in text and "sharing.deliverer_stopped" in text
