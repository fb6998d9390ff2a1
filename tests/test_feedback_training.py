"""Feedback as a training and reporting source: events store, Capture files, the replay and
experiment-report commands, and the attribution join behind CTR per variant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.feedback.attribution import Attribution, wilson_interval
from shared.feedback.process import EVENTS, process_batch
from shared.feedback.schema import FeedbackEvent
from shared.runtime import Runtime, get_runtime
from shared.settings import get_settings
from shared.stores.documents import DocumentStore
from shared.stores.events import EventHubSink
from tests.test_producer import FakeProducer
from training import cli
from training.capture import read_capture, write_capture_file
from training.commands.replay_events import replay
from training.events_source import read_events
from training.interactions import DataError

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC)


def ev(event_id: str, user: str = "u1", item: str = "i1", kind: str = "view",
       ago_hours: float = 1, tenant: str = "default", **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "tenant": tenant, "userId": user, "itemId": item,
            "type": kind, "timestamp": (NOW - timedelta(hours=ago_hours)).isoformat(), **extra}


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The process runtime on embedded defaults in a private folder, as the CLI builds it."""
    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    get_runtime.cache_clear()
    yield get_runtime()
    get_settings.cache_clear()
    get_runtime.cache_clear()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- attribution -------------------------------------------------------------------------------

def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson_interval(0, 10)[0] == 0.0 and 0.25 < wilson_interval(0, 10)[1] < 0.35
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(50, 100, 0.99)[0] < wilson_interval(50, 100, 0.95)[0]


def _impression(n: int, rid: str, item: str, variant: str, model: str = "v1") -> dict[str, Any]:
    return ev(f"imp{n}", kind="impression", item=item, recommendationId=rid,
              context={"modelVersion": model, "variant": variant})


def test_clicks_join_their_impressions_once_each_in_any_order() -> None:
    docs = [
        ev("c0", kind="click", item="a", recommendationId="r1"),  # click logged first
        _impression(1, "r1", "a", "control"), _impression(2, "r1", "b", "control"),
        _impression(3, "r2", "a", "treatment", "v2"), _impression(4, "r2", "b", "treatment", "v2"),
        _impression(5, "r2", "b", "treatment", "v2"),  # same item shown twice: one impression
        ev("c1", kind="click", item="a", recommendationId="r2"),
        ev("c2", kind="click", item="a", recommendationId="r2"),  # a double tap: one click
        ev("c3", kind="click", item="b", recommendationId="r2"),
        ev("c4", kind="click", item="z", recommendationId="r2"),  # never shown: unattributed
        ev("c5", kind="click", item="a"),  # no recommendation: not an experiment click
        ev("x", kind="impression", item="a", recommendationId="r9", tenant="other",
           context={"variant": "control"}),
    ]
    report = Attribution("default").add_all(docs).report("variant")
    arms = {a.name: (a.impressions, a.clicks) for a in report.arms}
    assert arms == {"control": (2, 1), "treatment": (2, 2)}
    assert report.unattributed_clicks == 1
    by_model = {a.name: a.ctr for a in Attribution("default").add_all(docs).report("model").arms}
    assert by_model == {"v1": 0.5, "v2": 1.0}


def _experiment_events() -> list[dict[str, Any]]:
    out = []
    for n in range(200):
        variant = "control" if n % 2 else "treatment"
        rid = f"r{n}"
        out.append(_impression(n, rid, f"i{n % 7}", variant))
        clicked = (n % 20 == 1) if variant == "control" else (n % 4 == 0)
        if clicked:
            out.append(ev(f"c{n}", kind="click", item=f"i{n % 7}", recommendationId=rid))
    return out


def test_report_experiment_prints_ctr_per_variant_with_intervals(
    embedded: Runtime, capsys: pytest.CaptureFixture[str],
) -> None:
    process_batch(embedded.backends.store, [json.dumps(e).encode() for e in _experiment_events()])
    code, out, _ = _cli(capsys, "report-experiment")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    # control: 100 impressions, clicks at n % 20 == 1 -> 10; treatment: n % 4 == 0 -> 50
    assert "100" in lines["control"] and "10.00%" in lines["control"]
    assert "[5.52%, 17.44%]" in lines["control"]
    assert "50.00%" in lines["treatment"]
    assert "'treatment' has the highest CTR and its interval overlaps no other" in out
    code, out, _ = _cli(capsys, "report-experiment", "--by", "model", "--since",
                        (NOW - timedelta(days=1)).date().isoformat())
    assert code == 0 and "v1" in out and "30.00%" in out


def test_report_experiment_bad_input_exits_2_and_no_data_says_so(
    embedded: Runtime, capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cli(capsys, "report-experiment")[1].startswith("no impressions")
    code, _, err = _cli(capsys, "report-experiment", "--confidence", "2")
    assert code == 2 and "--confidence must be" in err
    code, _, err = _cli(capsys, "report-experiment", "--since", "last tuesday")
    assert code == 2 and "not an ISO date" in err
    code, _, err = _cli(capsys, "report-experiment", "--capture", "/nowhere/x.avro")
    assert code == 2 and "capture path not found" in err


def test_report_experiment_since_handles_timestamps_at_the_ends_of_the_calendar(
    embedded: Runtime, capsys: pytest.CaptureFixture[str],
) -> None:
    # accepted by the API; normalising it to UTC overflowed (year 0) and crashed the report
    ancient = "0001-01-01T00:00:00+14:00"
    old = [{**_impression(900, "r-old", "i1", "old"), "timestamp": ancient},
           {**ev("c-old", kind="click", item="i1", recommendationId="r-old"),
            "timestamp": ancient}]
    docs = [FeedbackEvent.model_validate(e).to_document() for e in old]
    embedded.backends.store.upsert_many(EVENTS, docs)
    process_batch(embedded.backends.store, [json.dumps(e).encode() for e in _experiment_events()])
    code, out, err = _cli(capsys, "report-experiment", "--since", "2020-01-01")
    assert code == 0, err
    assert "control" in out and "old" not in out.split()  # before --since: left out
    code, out, _ = _cli(capsys, "report-experiment", "--since", ancient)
    assert code == 0 and "old" in out.split()


def test_report_experiment_reads_capture_files(
    embedded: Runtime, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    events = _experiment_events()
    write_capture_file(tmp_path / "cap" / "0" / "a.avro", events[:150])
    write_capture_file(tmp_path / "cap" / "1" / "b.avro", [*events[150:], *events[:10]])
    code, out, _ = _cli(capsys, "report-experiment", "--capture", str(tmp_path / "cap"))
    assert code == 0 and "10.00%" in out and "50.00%" in out


# -- capture and the events store as training sources -----------------------------------------

def test_capture_files_give_each_event_once_and_skip_invalid_bodies(tmp_path: Path) -> None:
    events = [ev(f"e{n}", user=f"u{n % 4}", item=f"i{n % 6}", kind="click") for n in range(30)]
    events.append(ev("p", kind="purchase", item="i9"))
    events.append(ev("other", tenant="t2"))
    events.append(ev("old", ago_hours=24 * 40))
    write_capture_file(tmp_path / "a.avro", [*events, *events[:5]])  # redelivered events
    write_capture_file(tmp_path / "b.avro", [b"{broken", json.dumps(events[3]).encode()])
    (tmp_path / "empty.avro").write_bytes(b"")
    data, stats = read_capture([tmp_path], "default", since=NOW - timedelta(days=30))
    assert data is not None
    assert len(data) == 31  # 30 clicks + the purchase, duplicates, t2 and the old one excluded
    assert (stats.bodies, stats.invalid) == (len(events) + 5 + 2, 1)
    weights = dict(zip(data.item_ids[data.items].tolist(), data.weights.tolist(), strict=True))
    assert weights["i9"] == 4.0 and weights["i1"] == 2.0


def test_users_who_send_the_same_event_id_each_keep_their_event(
    tmp_path: Path, store: DocumentStore,
) -> None:
    """An event id is unique per user (as the store keeps them), not across users."""
    events = [ev("1", user=u, item=i, kind="purchase") for u, i in
              (("alice", "i1"), ("bob", "i2"), ("carol", "i3"))]
    assert process_batch(store, [json.dumps(e).encode() for e in events]).accepted == 3
    from_store = read_events(store, "default")
    assert from_store is not None and sorted(from_store.user_ids.tolist()) == ["alice", "bob",
                                                                              "carol"]
    write_capture_file(tmp_path / "a.avro", [*events, events[1]])  # bob's redelivered
    from_capture, _ = read_capture([tmp_path], "default")
    assert from_capture is not None and len(from_capture) == 3


def test_a_file_that_is_not_avro_is_a_readable_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.avro"
    bad.write_text("hello")
    with pytest.raises(DataError, match="not a readable Event Hubs Capture"):
        read_capture([bad], "default")


def test_a_damaged_capture_file_is_a_readable_error_wherever_the_damage_is(
    tmp_path: Path,
) -> None:
    """fastavro raises zlib, index, key and schema errors on damaged bytes, not only
    ValueError: each one was a traceback."""
    good = tmp_path / "good.avro"
    write_capture_file(good, [ev(f"e{n}") for n in range(20)])
    raw = good.read_bytes()
    outcomes = set()
    for at in range(0, len(raw), 7):
        damaged = tmp_path / "damaged.avro"
        damaged.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
        try:
            read_capture([damaged], "default")
            outcomes.add("read")
        except DataError:
            outcomes.add("refused")
    assert "refused" in outcomes  # and nothing else escaped


def test_capture_judges_future_timestamps_against_the_enqueued_time_as_the_trigger_does(
    tmp_path: Path,
) -> None:
    """Read hours later, an event stamped 30 minutes after Event Hubs received it is still
    refused (the trigger dead-lettered it), and one stamped just before is still accepted."""
    enqueued = NOW - timedelta(hours=2)
    ahead = ev("ahead", item="i1")
    ahead["timestamp"] = (enqueued + timedelta(minutes=30)).isoformat()
    fine = ev("fine", item="i2")
    fine["timestamp"] = (enqueued - timedelta(minutes=1)).isoformat()
    write_capture_file(tmp_path / "a.avro", [ahead, fine], enqueued=enqueued)
    data, stats = read_capture([tmp_path], "default")
    assert (stats.bodies, stats.invalid) == (2, 1)
    assert data is not None and data.item_ids.tolist() == ["i2"]


def test_capture_events_without_a_tenant_belong_to_the_deployments_default_tenant(
    tmp_path: Path,
) -> None:
    event = ev("e1", kind="purchase")
    del event["tenant"]
    write_capture_file(tmp_path / "a.avro", [event])
    data, _ = read_capture([tmp_path], "shop", default_tenant="shop")
    assert data is not None and len(data) == 1
    assert read_capture([tmp_path], "default", default_tenant="shop")[0] is None


def test_events_store_gives_the_tenants_interactions(store: DocumentStore) -> None:
    bodies = [json.dumps(e).encode() for e in [
        ev("a", "u1", "i1", "view"), ev("b", "u1", "i2", "purchase"),
        ev("c", "u2", "i1", "rating", value=5), ev("d", "u2", "i3", "dislike"),
        ev("e", "u2", "i3", "impression", recommendationId="r"),
        ev("f", "u3", "i1", "view", tenant="t2"), ev("g", "u3", "i4", "view", ago_hours=24 * 10),
        ev("h", "u4", "i2", "rating", value=0),  # a zero rating stays 0 (was taken as 1)
    ]]
    process_batch(store, bodies)
    data = read_events(store, "default")
    assert data is not None and len(data) == 6
    pairs = {(data.user_ids[u], data.item_ids[i], w)
             for u, i, w in zip(data.users, data.items, data.weights, strict=True)}
    assert pairs == {("u1", "i1", 1.0), ("u1", "i2", 4.0), ("u2", "i1", 5.0), ("u2", "i3", -1.0),
                     ("u3", "i4", 1.0), ("u4", "i2", 0.0)}  # the dislike: a row of weight -1
    recent = read_events(store, "default", since=NOW - timedelta(days=2))
    assert recent is not None and len(recent) == 5


def test_a_stored_rating_too_large_for_a_weight_is_skipped(store: DocumentStore) -> None:
    """Stored before the schema bounded values: float32 would make it inf, then NaN scores."""
    process_batch(store, [json.dumps(ev("a", "u1", "i1", "rating", value=4)).encode()])
    (doc,) = store.scan("events")
    store.upsert_many("events", [{**doc, "id": "huge", "eventId": "huge", "value": 1e39}])
    data = read_events(store, "default")
    assert data is not None and data.weights.tolist() == [4.0]
    assert read_events(store, "nobody") is None


# -- replay-events ----------------------------------------------------------------------------

def test_replay_jsonl_twice_applies_each_event_once(
    embedded: Runtime, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(ev(f"e{n}", user=f"u{n % 5}", item=f"i{n % 9}", kind="purchase"))
             for n in range(120)]
    lines.insert(3, "not json at all")
    lines.insert(5, json.dumps({**ev("nan", kind="rating"), "value": float("nan")}))  # NaN
    lines.insert(6, json.dumps({**ev("sur", kind="view"), "context": {"s": "\ud800"}}))
    lines.append(json.dumps(ev("bad", kind="teleport")))
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = _cli(capsys, "replay-events", "--file", str(path), "--chunk", "50")
    assert code == 0
    assert "replayed 121 events" in out and "120 new" in out and "1 dead-lettered" in out
    assert "skipped 3 line(s) that are not standard JSON objects" in out and ": 4, 6, 7" in out
    code, out, _ = _cli(capsys, "replay-events", "--file", str(path))
    assert code == 0 and "0 new, 120 already applied" in out
    assert len(list(embedded.backends.store.scan("events"))) == 120
    assert embedded.online.read_user("default", "u0").purchased == {"i0", "i1", "i2", "i3", "i4",
                                                                    "i5", "i6", "i7", "i8"}


def test_replay_csv_with_snake_case_headers_and_context(
    embedded: Runtime, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    path = tmp_path / "events.csv"
    ts = NOW.isoformat()
    path.write_text(
        "event_id,user_id,item_id,type,value,timestamp,recommendation_id,position,context\n"
        f"e1,u1,i1,rating,4.5,{ts},,,\n"
        f'e2,u1,i2,impression,,{ts},r1,3,"{{""variant"": ""B""}}"\n'
        f"e3,u1,i3,rating,lots,{ts},,,\n"
        f"e4,u1,i4,rating,1_0,{ts},,,\n"  # Python's digit grouping: not a CSV number
    )
    code, out, _ = _cli(capsys, "replay-events", "--file", str(path))
    assert code == 0 and "2 new" in out and "2 dead-lettered" in out
    docs = {d["id"]: d for d in embedded.backends.store.scan("events")}
    assert docs["e1"]["value"] == 4.5
    assert docs["e2"]["context"] == {"variant": "B"} and docs["e2"]["position"] == 3


def test_replay_bad_files_exit_2_with_a_sentence(
    embedded: Runtime, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    code, _, err = _cli(capsys, "replay-events", "--file", str(tmp_path / "none.jsonl"))
    assert code == 2 and "events file not found" in err
    odd = tmp_path / "events.xml"
    odd.write_text("<x/>")
    code, _, err = _cli(capsys, "replay-events", "--file", str(odd))
    assert code == 2 and "use a .jsonl" in err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("who,what\n1,2\n")
    code, _, err = _cli(capsys, "replay-events", "--file", str(wrong))
    assert code == 2 and "unknown column(s) who, what" in err
    junk = tmp_path / "junk.jsonl"
    junk.write_text("nope\n[1]\n" + "[" * 100_000 + "\n")  # the last: nested too deep
    code, out, _ = _cli(capsys, "replay-events", "--file", str(junk))
    assert code == 2 and "skipped 3 line(s)" in out
    header = "eventId,userId,itemId,type,timestamp,context\n"
    nan = tmp_path / "nan.csv"
    nan.write_text(header + 'e1,u1,i1,view,2025-01-01T00:00:00Z,"{""a"": NaN}"\n')
    code, out, _ = _cli(capsys, "replay-events", "--file", str(nan))
    assert code == 2 and "skipped 1 line(s)" in out and ": 2" in out
    latin = tmp_path / "latin.csv"
    latin.write_bytes((header + "e1,u1,caf\xe9,view,2025-01-01T00:00:00Z,\n").encode("latin-1"))
    code, _, err = _cli(capsys, "replay-events", "--file", str(latin))
    assert code == 2 and "not a readable UTF-8 CSV file" in err
    big = tmp_path / "big.csv"
    big.write_text(header + "e1,u1," + "x" * 200_000 + ",view,2025-01-01T00:00:00Z,\n")
    code, _, err = _cli(capsys, "replay-events", "--file", str(big))
    assert code == 2 and "field larger than field limit" in err


def test_replay_publishes_through_event_hubs_in_per_user_batches(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(ev(f"e{n}", user=f"u{n % 3}")) + "\n" for n in range(90)))
    producer = FakeProducer()
    progress: list[str] = []

    class Progress:
        def write(self, text: str) -> None:
            progress.append(text)

        def flush(self) -> None:
            pass

    totals = replay(path, EventHubSink(producer, sleep=lambda _: None), chunk=30,
                    progress=Progress())
    assert totals.sent == 90 and totals.accepted == 0  # the trigger will process them
    assert sum(len(b) for b in producer.sent) == 90
    assert {k for k, _ in producer.sent_keys()} == {"default|u0", "default|u1", "default|u2"}


def test_replay_command_runs_as_a_module(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(ev("e1", kind="purchase")) + "\n")
    env = {**os.environ, "RECO_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "training", "replay-events", "--file", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "replayed 1 events" in done.stdout and "1 new" in done.stdout


def test_replay_lines_the_json_decoder_refuses_otherwise_are_skipped_or_dead_lettered(
    embedded: Runtime, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """A JSON line holding an integer of more than 4,300 digits (Python's decoder raises a plain
    ValueError) and a CSV context nested too deep to decode (RecursionError) ended the replay
    with a traceback; the line is listed as skipped, the CSV row is sent as text and
    dead-lettered like any other cell that cannot be read."""
    good = json.dumps(ev("e1"))
    huge = json.dumps(ev("e2"))[:-1] + ', "position": ' + "9" * 5000 + "}"
    lines = tmp_path / "huge.jsonl"
    lines.write_text(f"{good}\n{huge}\n")
    code, out, _ = _cli(capsys, "replay-events", "--file", str(lines))
    assert code == 0 and "replayed 1 events" in out and "skipped 1 line(s)" in out
    assert ": 2" in out
    deep = tmp_path / "deep.csv"
    deep.write_text("eventId,userId,itemId,type,timestamp,context\n"
                    f'e3,u1,i1,view,{NOW.isoformat()},"{"[" * 50_000}{"]" * 50_000}"\n')
    code, out, _ = _cli(capsys, "replay-events", "--file", str(deep))
    assert code == 0 and "replayed 1 events" in out and "1 dead-lettered" in out
