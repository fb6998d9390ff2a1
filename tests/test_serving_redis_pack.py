"""The request path's own RESP packing writes exactly what redis-py's packer writes."""

from __future__ import annotations

import redis.asyncio as aredis

from shared.stores.cache import _pack


def test_pack_matches_redis_py_for_str_bytes_and_int_arguments() -> None:
    conn = aredis.Connection()
    commands = [
        ("ZRANGE", "os:{t:tenant}:u:é|1:recent", 0, -1, "REV"),
        ("SUNION", "a", "b", "c"),
        ("GET", b"reco:t:v:u:\x00\xff"),
        ("SET", "k", "x" * 10_000),
    ]
    assert _pack(commands) == b"".join(conn.pack_commands(commands))


def test_pack_leaves_other_argument_types_to_redis_py() -> None:
    assert _pack([("INCRBYFLOAT", "k", 1.5)]) is None
    assert _pack([("SET", "k", True)]) is None
