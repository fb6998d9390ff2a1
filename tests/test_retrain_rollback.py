"""Operations from the CLI (a real subprocess) against real Redis, Cosmos-protocol server and
Azurite: rollback restores the previous version's answers, list-versions, fill-cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.model_registry import MODELS, set_active
from shared.runtime import Runtime
from shared.serving.recommender import RECOMMENDATIONS
from shared.settings import Settings
from shared.stores.documents import DocumentStore
from shared.stores.errors import BackendError
from shared.stores.factory import build_backends
from tests import services
from tests.helpers import before_pointer_write, client_for, runtime_on
from tests.retrain_data import clustered, ease_trainer
from training.publish import READY, FillOptions, active_pointer, expire_version, version_status
from training.retrain import RetrainConfig, retrain_tenant

ROOT = Path(__file__).resolve().parents[1]
TENANT = "shop"
CONFIG = RetrainConfig(window_days=None, gate_tolerance=0.5, fill=FillOptions(chunk_users=16))


@pytest.fixture
def env(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str,
        tmp_path: Path) -> dict[str, str]:
    unique = uuid.uuid4().hex[:12]
    return {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_client.connection_pool.connection_kwargs["port"]),
        "COSMOS_ENDPOINT": cosmos_endpoint,
        "COSMOS_KEY": services.COSMOS_KEY,
        "COSMOS_DATABASE": f"db{unique}",
        "COSMOS_CREATE_CONTAINERS": "true",
        "COSMOS_VERIFY_TLS": "false",
        "ARTIFACTS_CONNECTION_STRING": azurite_connection,
        "ARTIFACTS_CONTAINER": f"models{unique}",
        "RECO_ACTIVE_VERSION_REFRESH_SECONDS": "0",
        "RECO_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture
def runtime(env: dict[str, str]) -> Runtime:
    settings = Settings(**env)  # type: ignore[arg-type]
    return runtime_on(settings, build_backends(settings))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def answer(runtime: Runtime, user: str, version: str | None = None) -> dict[str, Any]:
    """The API's answer; with `version`, waits for serving to load it (it swaps in the
    background)."""
    deadline = time.monotonic() + 15
    while True:
        body = dict(client_for(runtime).get(f"/api/recommendations/{user}?tenant={TENANT}")
                    .json())
        if version is None or body.get("modelVersion") == version or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def rollback_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                  runtime: Runtime, *args: str) -> tuple[int, str, str]:
    """`python -m training rollback --tenant TENANT ...` in this process on `runtime`, so a
    test can hook its store: the exit code, stdout and stderr."""
    from training import cli
    from training.commands import rollback

    monkeypatch.setattr(rollback, "get_runtime", lambda: runtime)
    code = cli.main(["rollback", "--tenant", TENANT, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def publish_two(runtime: Runtime) -> tuple[str, str, dict[str, Any]]:
    first = retrain_tenant(runtime, TENANT, clustered(seed=0), ease_trainer(), CONFIG)
    assert first.version is not None, first.message
    before = answer(runtime, "u5", first.version)
    second = retrain_tenant(runtime, TENANT, clustered(seed=1), ease_trainer(), CONFIG)
    assert second.version is not None, second.message
    return first.version, second.version, before


def test_rollback_restores_the_previous_versions_answers(env: dict[str, str],
                                                         runtime: Runtime) -> None:
    first, second, before = publish_two(runtime)
    during = answer(runtime, "u5", second)
    assert during["modelVersion"] == second and during["items"] != before["items"]

    done = cli(env, "rollback", "--tenant", TENANT)

    assert done.returncode == 0, done.stderr
    assert f"tenant '{TENANT}' now serves version {first} (was {second})" in done.stdout
    after = answer(runtime, "u5", first)
    assert after["modelVersion"] == first
    assert [i["itemId"] for i in after["items"]] == [i["itemId"] for i in before["items"]]
    forward = cli(env, "rollback", "--tenant", TENANT, "--to", second)
    assert forward.returncode == 0, forward.stderr
    assert answer(runtime, "u5", second)["modelVersion"] == second


def test_list_versions_shows_status_and_the_active_one(env: dict[str, str],
                                                       runtime: Runtime) -> None:
    first, second, _ = publish_two(runtime)
    done = cli(env, "list-versions", "--tenant", TENANT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(second) and "<- active" in line for line in lines)
    assert any(line.startswith(first) and "<- previous" in line and "ready" in line
               for line in lines)
    assert f"tenant '{TENANT}': 2 versions, active {second}, previous {first}" in done.stdout
    empty = cli(env, "list-versions", "--tenant", "nobody")
    assert empty.returncode == 0 and "has no model versions yet" in empty.stdout


def test_fill_cache_rebuilds_redis_from_cosmos_after_a_flush(
    env: dict[str, str], runtime: Runtime, redis_client: redis.Redis
) -> None:
    _, second, _ = publish_two(runtime)
    redis_client.flushdb()
    done = cli(env, "fill-cache", "--version", second, "--tenant", TENANT)
    assert done.returncode == 0, done.stderr
    assert f"wrote 80 users' candidates of version {second}" in done.stdout
    assert "from the cosmos store to the redis cache" in done.stdout
    assert len(list(redis_client.scan_iter(match=f"reco:{TENANT}:{second}:u:*"))) == 80
    assert answer(runtime, "u9", second)["source"] == "cache"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rollback", "--tenant", TENANT, "--to", "v1999"), "has no version 'v1999'"),
        (("rollback", "--tenant", "nobody"), "has no active version to roll back"),
        (("rollback", "--tenant", "bad tenant"), "is not valid"),
        (("fill-cache", "--version", "v1999", "--tenant", TENANT), "has no version 'v1999'"),
    ],
)
def test_bad_input_exits_2_with_a_sentence(env: dict[str, str], runtime: Runtime,
                                          args: tuple[str, ...], message: str) -> None:
    retrain_tenant(runtime, TENANT, clustered(seed=0), ease_trainer(), CONFIG)
    done = cli(env, *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_rollback_to_an_expired_version_is_refused(env: dict[str, str],
                                                  runtime: Runtime) -> None:
    first, _, _ = publish_two(runtime)
    third = retrain_tenant(runtime, TENANT, clustered(seed=2), ease_trainer(), CONFIG)
    assert third.expired == [first]
    done = cli(env, "rollback", "--tenant", TENANT, "--to", first)
    assert done.returncode == 2 and "is expired" in done.stderr


def test_an_expiry_that_fails_part_way_leaves_the_version_expiring_never_ready(
    env: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _, _ = publish_two(runtime)
    store = runtime.backends.store
    real_delete = store.delete
    deletes = [0]

    def throttled_half_way(container: str, item_id: str, partition_key: str) -> bool:
        if container == RECOMMENDATIONS:
            deletes[0] += 1
            if deletes[0] > 10:
                raise BackendError("cosmos delete failed: 503 service unavailable")
        return real_delete(container, item_id, partition_key)

    monkeypatch.setattr(store, "delete", throttled_half_way)
    third = retrain_tenant(runtime, TENANT, clustered(seed=2), ease_trainer(), CONFIG)
    monkeypatch.undo()
    assert third.status == "published" and third.expired == []  # logged, retried next run
    assert version_status(store.read(MODELS, first, TENANT) or {}) == "expiring"

    refused = cli(env, "rollback", "--tenant", TENANT, "--to", first)
    assert refused.returncode == 2 and f"version {first} of tenant '{TENANT}' is expiring" \
        in refused.stderr

    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)
    assert rerun.status == "no_data"
    assert version_status(store.read(MODELS, first, TENANT) or {}) == "expired"


def test_an_expiry_spares_a_version_a_rollback_made_active_or_previous(
    runtime: Runtime
) -> None:
    """The publish chose what to expire before an operator's rollback: the expiry reads the
    pointer again after marking the version, and leaves what it names."""
    first, second, before = publish_two(runtime)
    store = runtime.backends.store
    set_active(store, TENANT, first)  # the rollback: first active, second previous

    assert expire_version(runtime.backends, TENANT, first) is None
    assert expire_version(runtime.backends, TENANT, second) is None
    assert [version_status(store.read(MODELS, v, TENANT) or {}) for v in (first, second)] == [
        "ready", "ready"]
    after = answer(runtime, "u5", first)
    assert after["source"] == "cache"
    assert [i["itemId"] for i in after["items"]] == [i["itemId"] for i in before["items"]]


def test_a_run_after_a_rollback_does_not_switch_back_to_an_unmarked_version(
    env: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish killed between its switch and its "ready" mark left the active version
    "filling"; the operator rolled back from it. The next run must not resume it over the
    rollback, and rolling forward must be possible."""
    import training.publish as publish

    first = retrain_tenant(runtime, TENANT, clustered(seed=0), ease_trainer(), CONFIG).version
    real_mark = publish.mark_version

    def killed_before_ready(store: Any, tenant: str, version: str, status: str,
                            **fields: Any) -> None:
        if status == READY:
            raise BackendError("the process was killed (injected)")
        real_mark(store, tenant, version, status, **fields)

    monkeypatch.setattr(publish, "mark_version", killed_before_ready)
    with pytest.raises(BackendError, match="killed"):
        retrain_tenant(runtime, TENANT, clustered(seed=1), ease_trainer(), CONFIG)
    monkeypatch.undo()
    pointer = active_pointer(runtime.backends.store, TENANT)
    assert pointer is not None and pointer["version"] != first
    second = str(pointer["version"])

    back = cli(env, "rollback", "--tenant", TENANT)
    assert back.returncode == 0, back.stderr
    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)
    pointer = active_pointer(runtime.backends.store, TENANT)
    assert pointer is not None and pointer["version"] == first, rerun.message
    forward = cli(env, "rollback", "--tenant", TENANT, "--to", second)
    assert forward.returncode == 0, forward.stderr


@pytest.mark.parametrize("first", [None, "v1"])
def test_two_switches_at_once_lose_neither(store: DocumentStore, first: str | None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A switch lands between another's read of the pointer and its write (or, for the first
    pointer, both find none): the later write is made from the version then active, so the
    pointer's `previous` names it."""
    if first is not None:
        set_active(store, TENANT, first)
    before_pointer_write(monkeypatch, store, TENANT, lambda: set_active(store, TENANT, "v2"))

    assert set_active(store, TENANT, "v3") == "v2"

    pointer = active_pointer(store, TENANT)
    assert pointer is not None and (pointer["version"], pointer["previous"]) == ("v3", "v2")


def test_a_publish_between_the_rollbacks_read_and_its_switch_stands(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The rollback takes no lease: a publish may switch after the rollback read the pointer.
    The rollback switches only from the version it read; the operator is told, and decides
    again with the new version in view."""
    _, second, _ = publish_two(runtime)
    store = runtime.backends.store
    published: list[Any] = []
    before_pointer_write(monkeypatch, store, TENANT, lambda: published.append(
        retrain_tenant(runtime, TENANT, clustered(seed=2), ease_trainer(), CONFIG)))

    code, out, err = rollback_here(monkeypatch, capsys, runtime)

    (third,) = published
    assert third.status == "published", third.message
    assert code == 2 and out == "" and "Traceback" not in err
    assert (f"the active version of tenant '{TENANT}' changed during the rollback (from "
            f"{second} to {third.version}): nothing was switched") in err
    pointer = active_pointer(store, TENANT)
    assert pointer is not None and (pointer["version"], pointer["previous"]) == (
        third.version, second)


def first_pinned_past_two_publishes(runtime: Runtime) -> tuple[str, str, dict[str, Any]]:
    """Three publishes, the first kept (pinned by an experiment) past the third: the first
    version, the second, and the pointer (third active, second previous)."""
    first, second, _ = publish_two(runtime)
    pinned = RetrainConfig(window_days=None, gate_tolerance=0.5,
                           fill=FillOptions(chunk_users=16, pinned=frozenset({first})))
    third = retrain_tenant(runtime, TENANT, clustered(seed=2), ease_trainer(), pinned)
    assert third.version is not None and third.expired == [], third.message
    pointer = active_pointer(runtime.backends.store, TENANT)
    assert pointer is not None and (pointer["version"], pointer["previous"]) == (
        third.version, second)
    return first, second, pointer


def test_a_rollback_undone_for_an_expiry_puts_the_pointer_back_as_it_was(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Once unpinned, a run's expiry of the first version begins while the operator rolls back
    to it. The rollback undoes its switch, and must leave the previous version recorded: the
    next run keeps only the active and previous versions."""
    first, second, before = first_pinned_past_two_publishes(runtime)
    third, store = before["version"], runtime.backends.store
    before_pointer_write(monkeypatch, store, TENANT,
                         lambda: expire_version(runtime.backends, TENANT, first))

    code, _, err = rollback_here(monkeypatch, capsys, runtime, "--to", first)

    assert code == 2 and (f"version {first} of tenant '{TENANT}' began expiring during the "
                          f"rollback; version {third} stays active") in err
    assert active_pointer(store, TENANT) == before
    monkeypatch.undo()
    rerun = retrain_tenant(runtime, TENANT, trainer=ease_trainer(), config=CONFIG)
    assert rerun.status == "no_data", rerun.message  # its expiry keeps active and previous
    assert version_status(store.read(MODELS, second, TENANT) or {}) == READY
    code, out, _ = rollback_here(monkeypatch, capsys, runtime)
    assert code == 0 and f"now serves version {second} (was {third})" in out
    assert answer(runtime, "u5", second)["modelVersion"] == second


def test_a_rollbacks_undo_does_not_overwrite_a_switch_made_since(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Between the rollback's switch and its undo another switch lands (a second operator
    rolls back to the second version): the undo puts the pointer back only while it is still
    the rollback's own, so the other switch stands and the operator is told."""
    first, second, _ = first_pinned_past_two_publishes(runtime)
    store = runtime.backends.store

    def expiry_then_another_switch_before_the_undo() -> None:
        expire_version(runtime.backends, TENANT, first)
        before_pointer_write(monkeypatch, store, TENANT,
                             lambda: set_active(store, TENANT, second))

    before_pointer_write(monkeypatch, store, TENANT, expiry_then_another_switch_before_the_undo)

    code, _, err = rollback_here(monkeypatch, capsys, runtime, "--to", first)

    assert code == 2 and (f"version {first} of tenant '{TENANT}' began expiring during the "
                          f"rollback, and the active version has been switched since (to "
                          f"{second})") in err
    pointer = active_pointer(store, TENANT)
    assert pointer is not None and (pointer["version"], pointer["previous"]) == (second, first)
