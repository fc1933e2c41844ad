"""Where signed audit checkpoints go and are read back from: the append-only file, the Kafka topic and,
where one is configured, an RFC 3161 timestamp authority (see :mod:`hub.governance.checkpoints`).

* **File** (``HUB_AUDIT_CHECKPOINT_FILE``): one JSON line per checkpoint, opened with ``O_APPEND`` and
  fsynced; nothing in the hub truncates or rewrites it. Make it append-only for the hub's user at the
  filesystem (``chattr +a``) or ship it to WORM storage.
* **Topic** ``hub.audit.checkpoints`` (:data:`hub.kafka.topics.AUDIT_CHECKPOINTS`, retention forever,
  never compacted): the same line as the value, the signing key id as the key.
* **Timestamp authority** (``HUB_AUDIT_TSA_URL``): :func:`request_timestamp` POSTs a DER
  ``TimeStampReq`` (SHA-256 of the checkpoint's signed bytes, a nonce, ``certReq``) as
  ``application/timestamp-query``, checks the reply's status is granted and that the token carries the
  checkpoint's digest, and keeps the token (base64 DER) with the checkpoint. The token's CMS signature
  is not checked by the hub: check it with the authority's certificate (``openssl ts -verify -digest
  <digest> -in token.tsr -CAfile tsa.pem``), the extension point for a verifier that must rely on it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from hub.core.errors import BrokerError
from hub.core.settings import Settings
from hub.governance.checkpoints import Checkpoint
from hub.kafka.topics import AUDIT_CHECKPOINTS, client_args, end_offsets

# ---- the file -----------------------------------------------------------------------------------


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync it (the directory is created with mode 0700 the first time)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[str]:
    """The file's lines; none if it does not exist (verify then reports the checkpoints it lacks)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


# ---- the topic ----------------------------------------------------------------------------------


async def publish(settings: Settings, bootstrap: str, checkpoints: list[Checkpoint]) -> None:
    """Publish checkpoints to the topic and return once the broker acknowledged them (acks=all)."""
    producer = AIOKafkaProducer(**client_args(settings, bootstrap), acks="all",  # type: ignore[arg-type]
                                enable_idempotence=False, request_timeout_ms=15000)
    try:
        await producer.start()
        for cp in checkpoints:
            await producer.send_and_wait(AUDIT_CHECKPOINTS.name, cp.line().encode(), key=cp.key_id.encode())
    except KafkaError as exc:
        raise BrokerError(f"cannot publish audit checkpoints to {AUDIT_CHECKPOINTS.name}: {exc}") from exc
    finally:
        await producer.stop()


async def read_topic(settings: Settings, bootstrap: str) -> list[str] | None:
    """Every line on the checkpoint topic, oldest first per partition; None if the topic does not exist."""
    consumer = AIOKafkaConsumer(**client_args(settings, bootstrap), enable_auto_commit=False)  # type: ignore[arg-type]
    try:
        await consumer.start()
        if AUDIT_CHECKPOINTS.name not in await consumer.topics():
            return None
        parts = [TopicPartition(AUDIT_CHECKPOINTS.name, p)
                 for p in sorted(consumer.partitions_for_topic(AUDIT_CHECKPOINTS.name) or ())]
        begin = await consumer.beginning_offsets(parts)
        end = await end_offsets(consumer, parts)
        want = {tp: end[tp] for tp in parts if end[tp] > begin[tp]}
        lines: list[str] = []
        if not want:
            return lines
        consumer.assign(list(want))
        for tp in want:
            consumer.seek(tp, begin[tp])
        position = dict(begin)
        for _ in range(200):
            if all(position[tp] >= want[tp] for tp in want):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < want[tp] and m.value is not None:
                        lines.append(m.value.decode("utf-8", "replace"))
                    position[tp] = m.offset + 1
        return lines
    except KafkaError as exc:
        raise BrokerError(f"cannot read {AUDIT_CHECKPOINTS.name}: {exc}") from exc
    finally:
        await consumer.stop()



async def topic_is_empty(settings: Settings, bootstrap: str) -> bool:
    """Whether the checkpoint topic holds nothing (a new broker that lost its predecessor's log); a
    topic that does not exist is empty too."""
    consumer = AIOKafkaConsumer(**client_args(settings, bootstrap), enable_auto_commit=False)  # type: ignore[arg-type]
    try:
        await consumer.start()
        if AUDIT_CHECKPOINTS.name not in await consumer.topics():
            return True
        parts = [TopicPartition(AUDIT_CHECKPOINTS.name, p)
                 for p in sorted(consumer.partitions_for_topic(AUDIT_CHECKPOINTS.name) or ())]
        begin = await consumer.beginning_offsets(parts)
        end = await consumer.end_offsets(parts)
        return all(end[tp] <= begin[tp] for tp in parts)
    except KafkaError as exc:
        raise BrokerError(f"cannot read {AUDIT_CHECKPOINTS.name}: {exc}") from exc
    finally:
        await consumer.stop()

# ---- RFC 3161 -----------------------------------------------------------------------------------
SHA256_OID = bytes.fromhex("0609608648016503040201")  # OBJECT IDENTIFIER 2.16.840.1.101.3.4.2.1


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _der_int(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=False)
    return _der(0x02, raw)


def timestamp_request(digest: bytes, nonce: int) -> bytes:
    """DER TimeStampReq (RFC 3161 §2.4.1): v1, SHA-256 message imprint, nonce, certReq TRUE."""
    algorithm = _der(0x30, SHA256_OID + b"\x05\x00")
    imprint = _der(0x30, algorithm + _der(0x04, digest))
    return _der(0x30, _der_int(1) + imprint + _der_int(nonce) + b"\x01\x01\xff")


def _read_tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``at``."""
    tag, n = data[at], data[at + 1]
    at += 2
    if n & 0x80:
        size = n & 0x7F
        n = int.from_bytes(data[at:at + size], "big")
        at += size
    if at + n > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + n


def timestamp_token(reply: bytes, digest: bytes) -> bytes:
    """The TimeStampToken of a granted TimeStampResp that stamps ``digest``; ValueError otherwise."""
    tag, start, end = _read_tlv(reply, 0)
    if tag != 0x30:
        raise ValueError("not a TimeStampResp")
    tag, s_start, s_end = _read_tlv(reply, start)  # PKIStatusInfo
    itag, i_start, i_end = _read_tlv(reply, s_start)
    if tag != 0x30 or itag != 0x02:
        raise ValueError("not a TimeStampResp status")
    status = int.from_bytes(reply[i_start:i_end], "big")
    if status not in (0, 1):  # granted, grantedWithMods
        raise ValueError(f"the timestamp authority refused the request (PKIStatus {status})")
    if s_end >= end:
        raise ValueError("granted but no timeStampToken")
    _, _, t_end = _read_tlv(reply, s_end)
    token = reply[s_end:t_end]
    if digest not in token:
        raise ValueError("the timestamp token does not stamp this checkpoint's digest")
    return token


async def request_timestamp(url: str, cp: Checkpoint, client: httpx.AsyncClient | None = None) -> dict[str, str]:
    """Ask the timestamp authority at ``url`` to stamp ``cp``: {"tsa": url, "token": base64 DER}.

    ValueError when the authority refuses or answers something unusable; httpx errors when unreachable."""
    digest = hashlib.sha256(cp.signed_bytes()).digest()
    body = timestamp_request(digest, secrets.randbits(63))
    own = client is None
    http = client or httpx.AsyncClient(timeout=10.0)
    try:
        r = await http.post(url, content=body, headers={"Content-Type": "application/timestamp-query",
                                                         "Accept": "application/timestamp-reply"})
        if r.status_code != 200:
            raise ValueError(f"timestamp authority answered HTTP {r.status_code}")
        try:
            token = timestamp_token(r.content, digest)
        except IndexError:
            raise ValueError("timestamp authority reply is truncated") from None
    finally:
        if own:
            await http.aclose()
    return {"tsa": url, "token": base64.b64encode(token).decode()}
