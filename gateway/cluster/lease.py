"""The cluster's KV bucket: the active engine's leadership lease and the gateways' liveness keys.

One JetStream KV bucket (``[cluster] kv_bucket``, R = ``replicas``, history 1) whose entries
expire ``lease_ttl_s`` after their last write (the bucket's TTL):

* ``leader``: the lease. Its value names the engine holding it; its revision is the holder's
  token. Acquire = create-if-absent (only possible once the previous holder's entry expired);
  renew every ``ttl / 3`` = update with the expected revision. A failed compare-and-set
  (someone else holds it) loses it at once. The holder also keeps a local deadline, measured
  on its own monotonic clock from the moment it *sent* the last successful write, a quarter
  TTL short of the server's expiry: ``held()`` is false past it, without asking anyone. So a
  process that was frozen (SIGSTOP, a long GC pause, a VM stall) knows on waking, before it
  publishes anything, that it may have been deposed.
* ``gw-<gateway id>``: a gateway's liveness; its value is the gateway's boot nonce, rewritten
  every ``ttl / 3``. A missing key, or one with another nonce, means that gateway life is gone.
"""

from __future__ import annotations

import logging
import time

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from carbonx.gateway.cluster.journal import _transient, retrying
from carbonx.gateway.settings import ClusterSettings

log = logging.getLogger(__name__)

LEASE_KEY = "leader"


def liveness_key(gateway_id: str) -> str:
    return f"gw-{gateway_id}"


async def ensure_kv(js: JetStreamContext, settings: ClusterSettings) -> KeyValue:
    """The cluster's KV bucket, created if missing (TTL ``lease_ttl_s``, file storage, ``replicas``)."""
    bucket = settings.kv_bucket
    try:
        return await retrying(lambda: js.key_value(bucket), what=f"opening KV bucket {bucket}")
    except nats.js.errors.BucketNotFoundError:
        pass
    config = KeyValueConfig(bucket=bucket, history=1, ttl=settings.lease_ttl_s, storage=StorageType.FILE, replicas=settings.replicas)
    return await retrying(lambda: js.create_key_value(config), what=f"creating KV bucket {bucket}")


class Lease:
    """The leadership lease as seen by one engine (see the module docstring)."""

    def __init__(self, kv: KeyValue, holder: str, ttl_s: float) -> None:
        self.kv = kv
        self.holder = holder
        self.ttl_s = ttl_s
        self.token: int | None = None  # KV revision of our last write; None: not held
        self.deadline = 0.0  # monotonic: held() is false from here on
        self.acquired = 0  # times acquired (metrics, tests)

    def held(self) -> bool:
        """True while this engine may act as the active one (checked before every publish)."""
        if self.token is None:
            return False
        if time.monotonic() >= self.deadline:
            log.warning("lease: local deadline passed (frozen or cut off): no longer the active engine")
            self.token = None
            return False
        return True

    def _margin(self) -> float:
        return self.ttl_s * 0.75

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it. True if we hold it now."""
        sent = time.monotonic()
        try:
            rev = await self.kv.create(LEASE_KEY, self.holder.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return False  # someone holds it
        except Exception as exc:
            if _transient(exc) or isinstance(exc, nats.errors.Error):
                log.info("lease: acquiring failed for now: %r", exc)
                return False
            raise
        self.token, self.deadline = rev, sent + self._margin()
        self.acquired += 1
        log.warning("lease: acquired (revision %d): this engine (%s) is the active one", rev, self.holder)
        return True

    async def renew(self) -> bool:
        """Extend the lease (compare-and-set on our revision). False once lost."""
        if not self.held():
            return False
        sent = time.monotonic()
        try:
            rev = await self.kv.update(LEASE_KEY, self.holder.encode(), last=self.token)
        except nats.js.errors.KeyWrongLastSequenceError:
            log.warning("lease: lost (another engine holds it)")
            self.token = None
            return False
        except Exception as exc:  # no answer: keep it until the local deadline, retry next round
            log.warning("lease: renewal failed for now: %r", exc)
            return self.held()
        self.token, self.deadline = rev, sent + self._margin()
        return True

    async def release(self) -> None:
        """Give the lease up (clean shutdown) so a standby takes over without waiting for the TTL."""
        if self.token is None:
            return
        token, self.token = self.token, None
        try:
            await self.kv.delete(LEASE_KEY, last=token)
        except Exception as exc:
            log.info("lease: release failed (it will expire): %r", exc)
