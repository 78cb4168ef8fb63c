"""Local services speak their real protocols: the checks later issues rely on.

Each test first calls ``require_service`` (skip when unreachable, fail with
OPENCEM_REQUIRE_SERVICES=1), works only with names unique to this run (uuid), so
parallel runs (pytest-xdist) never collide, and removes what it created.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import struct
import uuid

import pytest

from tests.conftest import require_service

pytestmark = pytest.mark.services

TIMEOUT = 5.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


# --- PostgreSQL ------------------------------------------------------------------


def pg_connect(host: str, port: int):
    """Trust auth on database `test`: user `postgres` first, then the OS user."""
    import psycopg

    errors = []
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        try:
            return psycopg.connect(
                host=host, port=port, dbname="test", user=user, connect_timeout=5, autocommit=True
            )
        except psycopg.OperationalError as err:
            errors.append(f"{user}: {err}")
    pytest.fail("cannot connect to PostgreSQL database 'test': " + "; ".join(errors))


def test_postgres_schema_table_roundtrip():
    """PostgreSQL (operational store): create a schema and table, write rows, read them back."""
    host, port = require_service("postgres")
    from psycopg import sql

    name = unique("opencem_test")
    schema = sql.Identifier(name)
    rows = [(1, "cell-a", 0.5), (2, "cell-b", 1.25), (3, "cell-c", None)]
    with pg_connect(host, port) as con:
        try:
            con.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            table = sql.SQL("{}.kpi").format(schema)
            ddl = "CREATE TABLE {} (id int PRIMARY KEY, cell text NOT NULL, value double precision)"
            con.execute(sql.SQL(ddl).format(table))
            with con.cursor() as cur:
                cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(table), rows)
            query = sql.SQL("SELECT id, cell, value FROM {} ORDER BY id").format(table)
            assert con.execute(query).fetchall() == rows
        finally:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        gone = con.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [name]).fetchone()
        assert gone == (0,)


# --- Redis -----------------------------------------------------------------------


def test_redis_set_get_expiry():
    """Redis: a key set with an expiry reads back with its value and a TTL, then is deleted."""
    host, port = require_service("redis")
    import redis

    r = redis.Redis(host=host, port=port, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    key = unique("opencem:test")
    try:
        assert r.set(key, "hello", ex=60)
        assert r.get(key) == b"hello"
        assert 0 < r.ttl(key) <= 60
    finally:
        r.delete(key)
    assert not r.exists(key)
    r.close()


# --- NATS JetStream --------------------------------------------------------------


async def _jetstream_roundtrip(host: str, port: int) -> list[bytes]:
    import nats

    stream, subject = unique("OPENCEM_TEST"), f"opencem.test.{uuid.uuid4().hex}"
    nc = await nats.connect(f"nats://{host}:{port}", connect_timeout=TIMEOUT, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=TIMEOUT)
        await js.add_stream(name=stream, subjects=[subject])
        try:
            for i in range(3):
                ack = await js.publish(subject, f"msg-{i}".encode())
                assert ack.stream == stream and ack.seq == i + 1
            sub = await js.pull_subscribe(subject, stream=stream)
            received: list[bytes] = []
            while len(received) < 3:
                for msg in await sub.fetch(3 - len(received), timeout=TIMEOUT):
                    received.append(msg.data)
                    await msg.ack()
            await sub.unsubscribe()
            return received
        finally:
            await js.delete_stream(stream)
    finally:
        await nc.close()


def test_nats_jetstream_publish_and_pull():
    """NATS JetStream (streaming): a new stream stores 3 messages; a pull consumer reads them in order."""
    host, port = require_service("nats")
    assert asyncio.run(_jetstream_roundtrip(host, port)) == [b"msg-0", b"msg-1", b"msg-2"]


# --- RabbitMQ (raw AMQP 0-9-1) ---------------------------------------------------


def test_rabbitmq_amqp_handshake():
    """RabbitMQ: the AMQP 0-9-1 protocol header is answered by Connection.Start (v0-9, PLAIN auth)."""
    host, port = require_service("rabbitmq")
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        frame_type, channel, size = struct.unpack(">BHI", recv_exact(sock, 7))
        payload = recv_exact(sock, size)
        assert recv_exact(sock, 1) == b"\xce"  # frame-end
    assert (frame_type, channel) == (1, 0)  # method frame on the connection channel
    class_id, method_id, major, minor = struct.unpack(">HHBB", payload[:6])
    assert (class_id, method_id, major, minor) == (10, 10, 0, 9)  # Connection.Start, AMQP 0-9
    (table_len,) = struct.unpack(">I", payload[6:10])
    server_properties = payload[10 : 10 + table_len]
    (mech_len,) = struct.unpack(">I", payload[10 + table_len : 14 + table_len])
    mechanisms = payload[14 + table_len : 14 + table_len + mech_len].split()
    assert b"RabbitMQ" in server_properties
    assert b"PLAIN" in mechanisms


# --- MQTT 3.1.1 (raw) ------------------------------------------------------------


def mqtt_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def mqtt_packet(first_byte: int, body: bytes) -> bytes:
    length, encoded = len(body), b""
    while True:
        length, digit = divmod(length, 128)
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            return bytes([first_byte]) + encoded + body


def mqtt_read(sock: socket.socket) -> tuple[int, bytes]:
    first = recv_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        digit = recv_exact(sock, 1)[0]
        length += (digit & 0x7F) << shift
        shift += 7
        if not digit & 0x80:
            return first, recv_exact(sock, length)


def test_mqtt_connect_subscribe_publish():
    """MQTT (Mosquitto): CONNECT is accepted, and a QoS 0 PUBLISH comes back to our own SUBSCRIBE."""
    host, port = require_service("mqtt")
    client_id = f"opencem-{uuid.uuid4().hex[:12]}"  # <= 23 chars, valid for any 3.1.1 broker
    topic = f"opencem/test/{uuid.uuid4().hex}"
    payload = f"hello {uuid.uuid4().hex}".encode()
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        # CONNECT: protocol "MQTT" level 4, clean session, keep-alive 30 s.
        header = mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 30)
        sock.sendall(mqtt_packet(0x10, header + mqtt_string(client_id)))
        assert mqtt_read(sock) == (0x20, b"\x00\x00")  # CONNACK, session absent, accepted
        # SUBSCRIBE (packet id 1) to the topic at QoS 0; wait for SUBACK granting QoS 0.
        sock.sendall(mqtt_packet(0x82, struct.pack(">H", 1) + mqtt_string(topic) + b"\x00"))
        assert mqtt_read(sock) == (0x90, b"\x00\x01\x00")
        # PUBLISH at QoS 0 (no packet id) and receive it back.
        sock.sendall(mqtt_packet(0x30, mqtt_string(topic) + payload))
        first, body = mqtt_read(sock)
        assert first & 0xF0 == 0x30 and first & 0x06 == 0  # PUBLISH, QoS 0
        (topic_len,) = struct.unpack(">H", body[:2])
        assert body[2 : 2 + topic_len].decode() == topic
        assert body[2 + topic_len :] == payload
        sock.sendall(b"\xe0\x00")  # DISCONNECT
