"""Document store: JSON documents addressed by (container, id, partition key).

Cosmos DB for NoSQL in Azure, SQLite embedded. Every container is partitioned on `/pk`,
so a point read always names both the id and the partition key.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from shared.stores.errors import BackendError

Document = dict[str, Any]

# Containers and what they hold; all are partitioned by the document's "pk" field.
CONTAINERS: dict[str, str] = {
    "recommendations": "per-user candidate lists, one per model version (pk = tenant|user)",
    "events": "accepted feedback events, id = event id (pk = tenant|user)",
    "deadletters": "rejected feedback with raw body and reason (pk = id, the body's digest)",
    "models": "model versions and the active-version pointer (pk = tenant)",
}
PARTITION_KEY_PATH = "/pk"


class DocumentStore(Protocol):
    name: str

    def read(self, container: str, item_id: str, partition_key: str) -> Document | None: ...
    def upsert(self, container: str, doc: Document) -> None: ...
    def upsert_many(self, container: str, docs: Iterable[Document]) -> int: ...
    def create(self, container: str, doc: Document) -> bool: ...
    def delete(self, container: str, item_id: str, partition_key: str) -> bool: ...
    def delete_many(self, container: str, ids: Iterable[tuple[str, str]]) -> int:
        """Deletes the documents named by (id, partition key); returns how many existed."""
        ...
    def delete_if(self, container: str, item_id: str, partition_key: str,
                  expected: Mapping[str, str]) -> bool:
        """Deletes the document only while its top-level fields equal `expected`, atomically
        (a writer that replaces it in between wins); False when missing or different."""
        ...
    def replace_if(self, container: str, doc: Document, expected: Mapping[str, str]) -> bool:
        """Replaces the document only while its top-level fields equal `expected`, atomically;
        False when missing or different (nothing written)."""
        ...
    def query_partition(self, container: str, partition_key: str) -> list[Document]: ...
    def scan(self, container: str, where: Mapping[str, str] | None = None
             ) -> Iterator[Document]:
        """Every document of the container, or those whose top-level fields equal `where`
        (filtered by the store, across partitions)."""
        ...
    def ping(self) -> bool: ...


def _without_system_fields(doc: Any) -> Document:
    """Cosmos adds _rid, _etag, _ts...; callers see the same document SQLite returns."""
    return {k: v for k, v in dict(doc).items() if not k.startswith("_")}


def _rows(docs: Iterable[Document]) -> list[tuple[str, str, str]]:
    """(pk, id, body) rows for SQLite, each document checked."""
    rows = []
    for d in docs:
        item_id, pk = _check(d)
        rows.append((pk, item_id, json.dumps(d)))
    return rows


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _filter_fields(where: Mapping[str, str] | None) -> list[str]:
    """The filter's field names, checked: they are written into the query text."""
    fields = list(where or {})
    bad = [f for f in fields if not _FIELD.match(f)]
    if bad:
        raise ValueError(f"cannot filter on field names {bad}")
    return fields


def _check(doc: Document) -> tuple[str, str]:
    item_id, pk = doc.get("id"), doc.get("pk")
    if not isinstance(item_id, str) or not isinstance(pk, str):
        raise ValueError("a document needs string 'id' and 'pk' fields")
    return item_id, pk


class SqliteStore:
    """One table per container; safe to share across threads (one connection, a lock)."""

    name = "sqlite"

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.Lock()
        for container in CONTAINERS:
            self._db.execute(
                f'CREATE TABLE IF NOT EXISTS "{container}" '
                "(pk TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (pk, id))"
            )

    @staticmethod
    def _table(container: str) -> str:
        if container not in CONTAINERS:
            raise ValueError(f"unknown container '{container}'")
        return f'"{container}"'

    def read(self, container: str, item_id: str, partition_key: str) -> Document | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT body FROM {self._table(container)} WHERE pk=? AND id=?",
                (partition_key, item_id),
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def upsert(self, container: str, doc: Document) -> None:
        self.upsert_many(container, [doc])

    def upsert_many(self, container: str, docs: Iterable[Document]) -> int:
        rows = _rows(docs)
        self._execute_many("INSERT OR REPLACE", container, rows)
        return len(rows)

    def create(self, container: str, doc: Document) -> bool:
        return self.create_many(container, [doc]) == 1

    def create_many(self, container: str, docs: Iterable[Document]) -> int:
        """Creates the documents whose id is new, in one transaction; returns how many."""
        return self._execute_many("INSERT OR IGNORE", container, _rows(docs))

    def _execute_many(self, verb: str, container: str, rows: list[tuple[str, str, str]]) -> int:
        return self._in_one_transaction(
            f"{verb} INTO {self._table(container)} (pk, id, body) VALUES (?,?,?)", rows
        )

    def _in_one_transaction(self, sql: str, rows: Sequence[tuple[str, ...]]) -> int:
        """`sql` for every row in one transaction; returns the rows SQLite reports as changed
        (executemany sums them)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                cur = self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(cur.rowcount)

    def delete(self, container: str, item_id: str, partition_key: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                f"DELETE FROM {self._table(container)} WHERE pk=? AND id=?",
                (partition_key, item_id),
            )
        return cur.rowcount == 1

    def delete_many(self, container: str, ids: Iterable[tuple[str, str]]) -> int:
        """One transaction for the lot (a transaction per row cost an expiry most of its
        time); returns how many existed."""
        rows = [(pk, item_id) for item_id, pk in ids]
        if not rows:
            return 0
        return self._in_one_transaction(
            f"DELETE FROM {self._table(container)} WHERE pk=? AND id=?", rows
        )

    def delete_if(self, container: str, item_id: str, partition_key: str,
                  expected: Mapping[str, str]) -> bool:
        fields = _filter_fields(expected)
        sql = f"DELETE FROM {self._table(container)} WHERE pk=? AND id=?"
        sql += "".join(f" AND json_extract(body, '$.{f}') = ?" for f in fields)
        with self._lock:  # one statement: the check and the delete are one step
            cur = self._db.execute(sql, [partition_key, item_id,
                                         *(str(v) for v in expected.values())])
        return cur.rowcount == 1

    def replace_if(self, container: str, doc: Document, expected: Mapping[str, str]) -> bool:
        fields = _filter_fields(expected)
        ((pk, item_id, body),) = _rows([doc])
        sql = f"UPDATE {self._table(container)} SET body=? WHERE pk=? AND id=?"
        sql += "".join(f" AND json_extract(body, '$.{f}') = ?" for f in fields)
        with self._lock:  # one statement: the check and the write are one step
            cur = self._db.execute(sql, [body, pk, item_id, *(str(v) for v in expected.values())])
        return cur.rowcount == 1

    def query_partition(self, container: str, partition_key: str) -> list[Document]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM {self._table(container)} WHERE pk=? ORDER BY id",
                (partition_key,),
            ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def scan(self, container: str, where: Mapping[str, str] | None = None
             ) -> Iterator[Document]:
        fields = _filter_fields(where)
        sql = f"SELECT body FROM {self._table(container)}"
        if fields:
            sql += " WHERE " + " AND ".join(f"json_extract(body, '$.{f}') = ?" for f in fields)
        with self._lock:
            rows = self._db.execute(sql, [str(v) for v in (where or {}).values()]).fetchall()
        for (body,) in rows:
            yield dict(json.loads(body))

    def ping(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1")
            return True
        except sqlite3.Error:
            return False


class CosmosStore:
    """Cosmos DB for NoSQL through one `CosmosClient` per process."""

    name = "cosmos"

    def __init__(self, database: Any, timeout_seconds: float = 2.0) -> None:
        self._database = database
        self._timeout = timeout_seconds
        self._containers = {name: database.get_container_client(name) for name in CONTAINERS}

    @classmethod
    def create_containers(cls, database: Any) -> None:
        """Create missing containers (key auth only: data-plane RBAC cannot create them)."""
        from azure.cosmos import PartitionKey

        for container in CONTAINERS:
            database.create_container_if_not_exists(
                id=container, partition_key=PartitionKey(path=PARTITION_KEY_PATH)
            )

    def _container(self, container: str) -> Any:
        try:
            return self._containers[container]
        except KeyError:
            raise ValueError(f"unknown container '{container}'") from None

    def read(self, container: str, item_id: str, partition_key: str) -> Document | None:
        raw = self._read_raw(self._container(container), item_id, partition_key)
        return None if raw is None else _without_system_fields(raw)

    def _read_raw(self, c: Any, item_id: str, partition_key: str) -> dict[str, Any] | None:
        """The document with Cosmos's system fields (`_etag`...), or None when missing."""
        from azure.cosmos import exceptions

        try:
            return dict(c.read_item(item_id, partition_key=partition_key, timeout=self._timeout))
        except exceptions.CosmosResourceNotFoundError:
            return None
        except exceptions.CosmosHttpResponseError as exc:
            if exc.status_code == 500 and not self._exists(c, item_id, partition_key):
                return None  # the local Cosmos stand-in answers 500 for a missing item
            raise BackendError(f"cosmos read failed: {exc.status_code} {exc.reason}") from exc
        except Exception as exc:  # transport errors, timeouts
            raise BackendError(f"cosmos read failed: {exc}") from exc

    def _exists(self, c: Any, item_id: str, partition_key: str) -> bool:
        rows = c.query_items(
            "SELECT VALUE c.id FROM c WHERE c.id = @id AND c.pk = @pk",
            parameters=[{"name": "@id", "value": item_id}, {"name": "@pk", "value": partition_key}],
            partition_key=partition_key,
        )
        return any(True for _ in rows)

    def upsert(self, container: str, doc: Document) -> None:
        _check(doc)
        try:
            self._container(container).upsert_item(doc, timeout=self._timeout)
        except ValueError:
            raise
        except Exception as exc:
            raise BackendError(f"cosmos upsert failed: {exc}") from exc

    def upsert_many(self, container: str, docs: Iterable[Document]) -> int:
        n = 0
        for doc in docs:
            self.upsert(container, doc)
            n += 1
        return n

    def create(self, container: str, doc: Document) -> bool:
        from azure.cosmos import exceptions

        _check(doc)
        try:
            self._container(container).create_item(doc, timeout=self._timeout)
            return True
        except exceptions.CosmosResourceExistsError:
            return False
        except Exception as exc:
            raise BackendError(f"cosmos create failed: {exc}") from exc

    def create_many(self, container: str, docs: Iterable[Document]) -> int:
        """Creates the documents whose id is new, a few requests in flight; returns how many."""
        batch = list(docs)
        if len(batch) <= 1:
            return sum(1 for d in batch if self.create(container, d))
        with ThreadPoolExecutor(max_workers=min(8, len(batch))) as pool:
            return sum(pool.map(lambda d: self.create(container, d), batch))

    def delete(self, container: str, item_id: str, partition_key: str) -> bool:
        from azure.cosmos import exceptions

        c = self._container(container)
        try:
            c.delete_item(item_id, partition_key=partition_key, timeout=self._timeout)
            return True
        except exceptions.CosmosResourceNotFoundError:
            return False
        except exceptions.CosmosHttpResponseError as exc:
            if exc.status_code == 500 and not self._exists(c, item_id, partition_key):
                return False
            raise BackendError(f"cosmos delete failed: {exc.status_code} {exc.reason}") from exc

    def delete_many(self, container: str, ids: Iterable[tuple[str, str]]) -> int:
        return sum(self.delete(container, item_id, pk) for item_id, pk in ids)

    def delete_if(self, container: str, item_id: str, partition_key: str,
                  expected: Mapping[str, str]) -> bool:
        from azure.core import MatchConditions

        return self._if_unchanged(
            container, item_id, partition_key, expected, "delete",
            lambda c, etag: c.delete_item(item_id, partition_key=partition_key,
                                          timeout=self._timeout, etag=etag,
                                          match_condition=MatchConditions.IfNotModified))

    def replace_if(self, container: str, doc: Document, expected: Mapping[str, str]) -> bool:
        from azure.core import MatchConditions

        item_id, pk = _check(doc)
        return self._if_unchanged(
            container, item_id, pk, expected, "replace",
            lambda c, etag: c.replace_item(item_id, doc, timeout=self._timeout, etag=etag,
                                           match_condition=MatchConditions.IfNotModified))

    def _if_unchanged(self, container: str, item_id: str, partition_key: str,
                      expected: Mapping[str, str], what: str,
                      write: Callable[[Any, str], object]) -> bool:
        """Read, compare `expected`, then `write(container, etag)` on the read's etag: Cosmos
        refuses the write (412) if anyone wrote the document in between."""
        from azure.cosmos import exceptions

        _filter_fields(expected)
        c = self._container(container)
        current = self._read_raw(c, item_id, partition_key)
        if current is None or any(str(current.get(f)) != str(v) for f, v in expected.items()):
            return False
        try:
            write(c, current["_etag"])
            return True
        except (exceptions.CosmosResourceNotFoundError,
                exceptions.CosmosAccessConditionFailedError):
            return False  # deleted or rewritten since the read
        except exceptions.CosmosHttpResponseError as exc:
            raise BackendError(f"cosmos {what} failed: {exc.status_code} {exc.reason}") from exc
        except Exception as exc:  # transport errors, timeouts
            raise BackendError(f"cosmos {what} failed: {exc}") from exc

    def query_partition(self, container: str, partition_key: str) -> list[Document]:
        try:
            rows = self._container(container).query_items(
                "SELECT * FROM c WHERE c.pk = @pk",  # the filter also satisfies the stand-in
                parameters=[{"name": "@pk", "value": partition_key}],
                partition_key=partition_key,
            )
            return sorted((_without_system_fields(r) for r in rows), key=lambda d: str(d["id"]))
        except Exception as exc:
            raise BackendError(f"cosmos query failed: {exc}") from exc

    def scan(self, container: str, where: Mapping[str, str] | None = None
             ) -> Iterator[Document]:
        fields = _filter_fields(where)
        query = "SELECT * FROM c"
        if fields:
            query += " WHERE " + " AND ".join(f"c.{f} = @p{i}" for i, f in enumerate(fields))
        params = [{"name": f"@p{i}", "value": str(v)}
                  for i, v in enumerate((where or {}).values())]
        try:
            rows = self._container(container).query_items(
                query, parameters=params, enable_cross_partition_query=True
            )
            for r in rows:
                yield _without_system_fields(r)
        except ValueError:
            raise
        except Exception as exc:
            raise BackendError(f"cosmos query failed: {exc}") from exc

    def ping(self) -> bool:
        try:
            self._database.read()
            return True
        except Exception:
            return False
