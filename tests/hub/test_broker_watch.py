"""The API's broker watch: a failed check closes the door to ingest only when the broker has acknowledged
nothing lately. A check that times out while the producer's own sends are answered (busy cores) is not an
outage; a broker that answers nothing is declared unreachable at once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from hub.core.settings import Settings
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.kafka.topics import DEADLETTER, ensure_topics
from hub.kafka.watch import UNREACHABLE, WATCH_TIMEOUT, BrokerWatch


def closed_port() -> str:
    """An address nothing listens on: every check there fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_a_failed_check_counts_only_when_the_broker_acknowledged_nothing_lately(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", kafka_bootstrap=closed_port())
    publisher = Publisher(settings)
    watch = BrokerWatch(settings, publisher)
    await watch.run_once()
    assert publisher.unreachable == UNREACHABLE  # nothing ever acknowledged: the failed check counts
    publisher.unreachable = None
    publisher.acknowledged_at = time.monotonic()  # the broker answered the producer just now
    await watch.run_once()
    assert publisher.unreachable is None
    publisher.acknowledged_at = time.monotonic() - 2 * WATCH_TIMEOUT  # and then nothing more
    await watch.run_once()
    assert publisher.unreachable == UNREACHABLE


async def test_an_acknowledged_publish_is_what_the_watch_trusts(settings: Settings) -> None:
    await ensure_topics(settings)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        assert publisher.acknowledged_at is None
        before = time.monotonic()
        await publisher.publish([OutgoingRecord(DEADLETTER.name, "k-1", b"x", [])])
        assert publisher.acknowledged_at is not None and publisher.acknowledged_at >= before
        publisher.bootstrap = closed_port()  # the watch's own check now fails (as when it times out)
        await BrokerWatch(settings, publisher).run_once()
        assert publisher.unreachable is None
    finally:
        await publisher.stop()


async def test_the_watch_keeps_one_connection_between_checks_and_starts_afresh_after_a_failure(
        settings: Settings) -> None:
    """A check a second over a client kept open, not a new connection each time; a failed check closes it and
    the next one connects again, so a broker that comes back is seen at once."""
    publisher = Publisher(settings)
    watch = BrokerWatch(settings, publisher)
    reachable = publisher.bootstrap
    try:
        await watch.run_once()
        first = watch._client
        assert publisher.unreachable is None and first is not None
        await watch.run_once()
        assert watch._client is first and publisher.unreachable is None
        publisher.bootstrap = closed_port()  # the broker gone (nothing acknowledged lately)
        await watch.run_once()
        assert publisher.unreachable == UNREACHABLE and watch._client is None
        publisher.bootstrap = reachable  # and back
        await watch.run_once()
        assert publisher.unreachable is None and watch._client is not None and watch._client is not first
    finally:
        await watch.close()
