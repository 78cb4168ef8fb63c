"""Where notifications go: a small :class:`Gateway` protocol and its implementations.

- :class:`OutboxGateway`: JSON Lines in ``WORKSPACE/outbox/<name>.jsonl``, the default for SMS,
  push and operator notices; a line per idempotency key even across a crash (kill -9) between
  writing and recording the send, because the file itself is checked for the key under a lock.
- :class:`HttpGateway`: a real SMS/push gateway, POST JSON with an ``Idempotency-Key`` header.
- :class:`WebhookGateway`: POST JSON signed with HMAC-SHA256 over ``<unix time>.<body>`` in
  ``X-Opencem-Signature: t=<unix>,v1=<hex>`` (:func:`verify_signature` checks one).

A gateway raises :class:`DeliveryError` saying whether trying again can help (timeouts,
connection failures, 5xx and 429 can; other 4xx cannot); dispatch owns retries and backoff.
HTTP is the standard library's http.client: no client library to install.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import http.client
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import OpencemError
from .alerting_spec import AlertingConfig, Integration

SIGNATURE_HEADER = "X-Opencem-Signature"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Delivery:
    """One attempt at sending one notification."""

    key: str                 # the notification's idempotency key: the same on every attempt
    channel: str
    payload: dict[str, Any]
    attempt: int             # 1 for the first


class DeliveryError(Exception):
    """A send that did not happen; ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message[:MAX_ERROR_CHARS])
        self.retry = retry


class Gateway(Protocol):
    max_attempts: int

    def send(self, delivery: Delivery) -> str | None:
        """Deliver it (or find it delivered already); an id the far side gave, if any."""


class GatewayConfigError(OpencemError):
    """A gateway that cannot be built from the config (a secret that is not there)."""


# --- the outbox ---------------------------------------------------------------------------------

class OutboxGateway:
    """Appends one JSON line per notification to ``folder/<name>.jsonl``, once per key.

    Under an exclusive ``flock`` it reads what was appended since it last looked (another
    process may append too), so a key already there is not written again: a dispatcher killed
    after writing but before recording the send writes nothing the second time. A line cut
    short by a crash mid-write is removed before the next append; readers take only lines
    that end in a newline."""

    def __init__(self, folder: Path, name: str, max_attempts: int = 5):
        self.path = Path(folder) / f"{name}.jsonl"
        self.max_attempts = max_attempts
        self._keys: set[str] = set()
        self._offset = 0

    def send(self, delivery: Delivery) -> str | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._catch_up(fd)
            if delivery.key in self._keys:
                return None
            line = json.dumps({"key": delivery.key, "channel": delivery.channel, **delivery.payload},
                              ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            self._keys.add(delivery.key)
            self._offset += len(line)
            return None
        except OSError as err:
            raise DeliveryError(f"cannot write the outbox {self.path}: {err.strerror or err}", retry=True) from None
        finally:
            os.close(fd)  # closing releases the lock

    def _catch_up(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size < self._offset:  # the file was rotated or emptied: read it all again
            self._keys.clear()
            self._offset = 0
        data = os.pread(fd, size - self._offset, self._offset) if size > self._offset else b""
        end = data.rfind(b"\n") + 1
        for raw in data[:end].splitlines():
            try:
                self._keys.add(json.loads(raw)["key"])
            except (ValueError, KeyError, TypeError):
                continue  # not ours (someone wrote into the file): skip it
        if end < len(data):  # a line a crash cut short: never delivered, remove it
            os.ftruncate(fd, self._offset + end)
        self._offset += end

    def keys(self) -> list[str]:
        """The keys in the file, in order (for tests and operators)."""
        if not self.path.is_file():
            return []
        out = []
        for raw in self.path.read_bytes().split(b"\n")[:-1]:
            try:
                out.append(json.loads(raw)["key"])
            except (ValueError, KeyError, TypeError):
                continue
        return out


# --- HTTP ---------------------------------------------------------------------------------------

def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> tuple[int, str]:
    """POST ``body`` to ``url``; (status, the first 500 characters of the reply). Failures to
    connect or answer in time are a retryable :class:`DeliveryError`."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = cls(parts.hostname, parts.port, timeout=timeout_s)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                             "User-Agent": "opencem", **headers})
        response = connection.getresponse()
        text = response.read(64 * 1024).decode("utf-8", "replace")[:MAX_ERROR_CHARS]
        return response.status, text
    except (TimeoutError, socket.timeout):
        raise DeliveryError(f"{parts.hostname}:{parts.port or ''} did not answer within {timeout_s:g} s",
                            retry=True) from None
    except (OSError, http.client.HTTPException) as err:
        raise DeliveryError(f"cannot reach {parts.hostname}: {getattr(err, 'strerror', None) or err}",
                            retry=True) from None
    finally:
        connection.close()


def judge(status: int, text: str, url: str) -> None:
    """2xx is done; 429 and 5xx may pass later; anything else will not."""
    if 200 <= status < 300:
        return
    retry = status == 429 or status >= 500 or status == 408
    raise DeliveryError(f"{urlsplit(url).hostname} answered {status}: {text.strip()[:200]}", retry=retry)


class HttpGateway:
    """A real SMS or push gateway: POST ``{"key", "to", "text", "title", "channel"}`` with
    ``Idempotency-Key`` (the gateway drops a repeat of a key it has sent) and, when the config
    names a token, ``Authorization: Bearer``."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0, max_attempts: int = 5):
        self.url, self.token, self.timeout_s, self.max_attempts = url, token, timeout_s, max_attempts

    def send(self, delivery: Delivery) -> str | None:
        p = delivery.payload
        body = json.dumps({"key": delivery.key, "to": p.get("to"), "text": p.get("text"), "title": p.get("title"),
                           "channel": delivery.channel}, ensure_ascii=False).encode()
        headers = {"Idempotency-Key": delivery.key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        status, text = post_json(self.url, body, headers, self.timeout_s)
        judge(status, text, self.url)
        return None


def sign(secret: bytes, body: bytes, unix_time: int) -> str:
    """The signature header's value: ``t=<unix>,v1=<hex HMAC-SHA256 of "<unix>." + body>``."""
    digest = hmac.new(secret, f"{unix_time}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={unix_time},v1={digest}"


def verify_signature(secret: bytes, header: str, body: bytes, now_unix: float, tolerance_s: int = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of now (what a
    webhook receiver checks; a replayed old request fails)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        stamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now_unix - stamp) > tolerance_s:
        return False
    expected = sign(secret, body, stamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class WebhookGateway:
    """POST the notification's JSON, signed; ``Idempotency-Key`` lets the receiver drop a
    repeat (a retry after a lost answer)."""

    def __init__(self, url: str, secret: bytes, timeout_s: float = 10.0, max_attempts: int = 8,
                 clock=time.time):
        self.url, self.secret, self.timeout_s, self.max_attempts, self.clock = url, secret, timeout_s, max_attempts, clock

    def send(self, delivery: Delivery) -> str | None:
        body = json.dumps({"key": delivery.key, **delivery.payload}, ensure_ascii=False, default=str).encode()
        headers = {"Idempotency-Key": delivery.key, SIGNATURE_HEADER: sign(self.secret, body, int(self.clock())),
                   "X-Opencem-Attempt": str(delivery.attempt)}
        status, text = post_json(self.url, body, headers, self.timeout_s)
        judge(status, text, self.url)
        return None


class UnavailableGateway:
    """A channel whose gateway could not be built (a secret missing): every attempt fails,
    retryably, saying why, so fixing the environment lets the queue drain."""

    def __init__(self, reason: str, max_attempts: int = 5):
        self.reason, self.max_attempts = reason, max_attempts

    def send(self, delivery: Delivery) -> str | None:
        raise DeliveryError(self.reason, retry=True)


# --- from the config ----------------------------------------------------------------------------

def build_gateways(config: AlertingConfig, outbox: Path, environ: Mapping[str, str] | None = None) -> dict[str, Gateway]:
    """channel -> gateway for every integration that sends something (work orders go through
    :mod:`.workorder`). SMS and push without a ``url`` share ``outbox/sms.jsonl`` and
    ``outbox/push.jsonl``; an ``outbox`` receiver writes ``outbox/<receiver>.jsonl``."""
    environ = os.environ if environ is None else environ
    base = config.file.parent if config.file else Path.cwd()
    out: dict[str, Gateway] = {}
    for integrations in config.receivers.values():
        for i in integrations:
            if i.type == "work_order":
                continue
            try:
                out[i.channel] = _gateway(i, outbox, environ, base)
            except GatewayConfigError as err:
                out[i.channel] = UnavailableGateway(str(err), i.max_attempts)
    return out


def _gateway(i: Integration, outbox: Path, environ: Mapping[str, str], base: Path) -> Gateway:
    if i.type == "outbox":
        return OutboxGateway(outbox, i.receiver, i.max_attempts)
    if i.type in ("sms", "push"):
        if i.url is None:
            return OutboxGateway(outbox, i.type, i.max_attempts)
        token = _secret(i.token_env, i.token_file, environ, base, f"the {i.channel} gateway's token", required=False)
        return HttpGateway(i.url, token.decode() if token else None, i.timeout_s, i.max_attempts)
    secret = _secret(i.secret_env, i.secret_file, environ, base, f"the {i.channel} webhook's secret", required=True)
    return WebhookGateway(i.url, secret, i.timeout_s, i.max_attempts)


def _secret(env: str | None, file: str | None, environ: Mapping[str, str], base: Path, what: str,
            required: bool) -> bytes | None:
    if env:
        value = environ.get(env, "").strip()
        if not value:
            raise GatewayConfigError(f"{what} comes from ${env}, which is not set")
        return value.encode()
    if file:
        path = (base / file).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as err:
            raise GatewayConfigError(f"{what} file {path} cannot be read ({getattr(err, 'strerror', None) or err})") \
                from None
        if not value:
            raise GatewayConfigError(f"{what} file {path} is empty")
        return value.encode()
    if required:
        raise GatewayConfigError(f"{what} is not configured")
    return None
