"""A named lease in the `models` container, so two retrain runs for a tenant never overlap.

Built on insert-once `create()` and the conditional `delete_if()`, which both SQLite and
Cosmos DB make atomic:
- a free lease is taken by creating its document;
- an expired lease is taken over by first creating a takeover marker named after the expired
  holder's token and expiry: only one contender can create it, so only one takes the lease
  over, and only with a conditional replace of the lease it read as expired;
- a holder releases it by deleting the document only while it still carries its token.

The lease lasts `ttl_seconds` and `held()` renews it every third of that while the block runs
(a conditional replace on the holder's token), so a run may take longer than the lease; a
crashed holder stops renewing and blocks new runs for at most `ttl_seconds`.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.stores.documents import DocumentStore

log = logging.getLogger(__name__)

LEASES = "models"  # small control documents live beside the version documents


@dataclass(frozen=True)
class Lease:
    name: str
    partition: str
    token: str
    holder: str
    expires: str


class LeaseHeld(RuntimeError):
    """Someone else holds the lease; the message names the holder and when it expires."""


class LeaseLost(RuntimeError):
    """The lease expired while its holder still ran and another run took it over."""


def _doc_id(name: str) -> str:
    return f"lease|{name}"


def _now() -> datetime:
    return datetime.now(UTC)


def _holder() -> str:
    return f"{socket.gethostname()}:{secrets.token_hex(3)}"


def try_acquire(
    store: DocumentStore, name: str, partition: str, ttl_seconds: int, holder: str | None = None
) -> Lease | None:
    """The lease if it was free or expired, else None (never waits)."""
    now = _now()
    lease = Lease(
        name=name,
        partition=partition,
        token=secrets.token_hex(16),
        holder=holder or _holder(),
        expires=(now + timedelta(seconds=ttl_seconds)).isoformat(),
    )
    doc = {
        "id": _doc_id(name), "pk": partition, "kind": "lease", "token": lease.token,
        "holder": lease.holder, "acquired": now.isoformat(), "expires": lease.expires,
    }
    if store.create(LEASES, doc):
        return lease
    current = store.read(LEASES, _doc_id(name), partition)
    if current is None:  # released between our create and read: try once more
        return lease if store.create(LEASES, doc) else None
    if datetime.fromisoformat(str(current["expires"])) > now:
        return None
    # Expired: exactly one contender creates the takeover marker for this expired lease (its
    # token and expiry: a late renewal gives it a new expiry, and so a marker of its own).
    # The marker stays: deleting it would let a contender that read the same expired lease a
    # moment later create it again and take over a second time. Cosmos DB drops it via `ttl`.
    expired = {"token": str(current["token"]), "expires": str(current["expires"])}
    marker = {
        "id": f"{_doc_id(name)}|takeover|{expired['token']}|{expired['expires']}",
        "pk": partition, "kind": "lease-takeover", "by": lease.holder, "at": now.isoformat(),
        "ttl": max(ttl_seconds * 2, 3600),
    }
    if not store.create(LEASES, marker):
        return None
    # Only over the lease read as expired: since the read its holder may have released it and
    # another run taken it afresh, or renewed it late; writing over either makes two holders.
    if not store.replace_if(LEASES, doc, expired):
        return None
    log.warning("lease %s/%s expired (held by %s); taken over by %s",
                partition, name, current.get("holder"), lease.holder)
    return lease


def holder_of(store: DocumentStore, name: str, partition: str) -> dict[str, str] | None:
    """Who holds the lease and until when, or None when it is free or expired."""
    current = store.read(LEASES, _doc_id(name), partition)
    if current is None or datetime.fromisoformat(str(current["expires"])) <= _now():
        return None
    return {"holder": str(current["holder"]), "expires": str(current["expires"])}


def renew(store: DocumentStore, lease: Lease, ttl_seconds: int) -> bool:
    """Pushes the expiry `ttl_seconds` ahead while the lease is still ours (same token); False
    once it was taken over or deleted (the caller no longer holds it)."""
    current = store.read(LEASES, _doc_id(lease.name), lease.partition)
    if current is None or current.get("token") != lease.token:
        return False
    expires = (_now() + timedelta(seconds=ttl_seconds)).isoformat()
    return store.replace_if(LEASES, {**current, "expires": expires}, {"token": lease.token})


class _Renewal:
    """A daemon thread that renews the lease until stopped; logs an error if it is lost."""

    def __init__(self, store: DocumentStore, lease: Lease, ttl_seconds: int) -> None:
        self._store, self._lease, self._ttl = store, lease, ttl_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lease-{lease.partition}-{lease.name}")

    def __enter__(self) -> _Renewal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        lease = self._lease
        while not self._stop.wait(max(self._ttl / 3, 1.0)):
            try:
                if not renew(self._store, lease, self._ttl):
                    log.error("lease %s/%s was lost (taken over after expiring); another run "
                              "may overlap this one", lease.partition, lease.name)
                    return
            except Exception as exc:  # a store hiccup: the next beat tries again
                log.warning("could not renew lease %s/%s: %s", lease.partition, lease.name, exc)


def check(store: DocumentStore, lease: Lease) -> None:
    """Raises LeaseLost unless the lease is still ours: a run calls it before a step that
    another holder may be taking too (the switch), since a lost lease only stops renewals."""
    current = store.read(LEASES, _doc_id(lease.name), lease.partition)
    if current is None or current.get("token") != lease.token:
        by = "another run" if current is None else str(current.get("holder"))
        raise LeaseLost(f"lease '{lease.name}' for '{lease.partition}' expired while this run "
                        f"held it and was taken over by {by}")


def release(store: DocumentStore, lease: Lease) -> bool:
    """Deletes the lease document if it is still ours: the token check and the delete are one
    conditional step, so a holder whose lease expired and was taken over meanwhile can never
    delete the new holder's lease."""
    return store.delete_if(LEASES, _doc_id(lease.name), lease.partition, {"token": lease.token})


@contextmanager
def held(store: DocumentStore, name: str, partition: str, ttl_seconds: int) -> Iterator[Lease]:
    """Runs the block under the lease or raises LeaseHeld without running it."""
    lease = try_acquire(store, name, partition, ttl_seconds)
    if lease is None:
        who = holder_of(store, name, partition)
        detail = f"held by {who['holder']} until {who['expires']}" if who else "just taken"
        raise LeaseHeld(f"lease '{name}' for '{partition}' is {detail}")
    try:
        with _Renewal(store, lease, ttl_seconds):
            yield lease
    finally:
        try:
            release(store, lease)
        except Exception as exc:  # the lease expires by itself; never mask the block's error
            log.warning("could not release lease %s/%s: %s", partition, name, exc)
