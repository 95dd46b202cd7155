from __future__ import annotations

from streams.worker.join import GenerationJoin
from streams.worker.scoring import GenerationRef


def ref(gid: str, output: str = "out") -> GenerationRef:
    return GenerationRef(gid, "app", "route", "model", "v1", output)


def test_lookup_until_expiry() -> None:
    table: dict = {}
    join = GenerationJoin(table, ttl_s=100)
    join.remember(ref("g1"), partition=0, now=0)
    join.remember(ref("g2"), partition=1, now=50)
    assert join.lookup("g1") == ref("g1") and join.lookup("missing") is None
    assert join.expire(0, now=99) == 0
    assert join.expire(0, now=100) == 1
    assert join.lookup("g1") is None and join.lookup("g2") == ref("g2")
    assert join.expire(1, now=100) == 0  # partitions expire independently
    assert join.expire(1, now=150) == 1 and table == {}


def test_writing_a_generation_again_extends_it() -> None:
    join = GenerationJoin({}, ttl_s=10)
    join.remember(ref("g", "first"), 0, now=0)
    join.remember(ref("g", "second"), 0, now=8)
    assert join.expire(0, now=12) == 0
    assert join.lookup("g") == ref("g", "second")
    assert join.expire(0, now=18) == 1


def test_expiry_heaps_rebuild_from_the_restored_table() -> None:
    table: dict = {}
    GenerationJoin(table, ttl_s=10).remember(ref("g"), 3, now=0)
    restored = GenerationJoin(table, ttl_s=10)  # e.g. after a restart: state came back from the changelog
    assert restored.expire(2, now=20) == 0
    assert restored.expire(3, now=20) == 1 and table == {}


def test_expire_respects_its_limit() -> None:
    join = GenerationJoin({}, ttl_s=1)
    for i in range(5):
        join.remember(ref(f"g{i}"), 0, now=0)
    assert join.expire(0, now=5, limit=2) == 2
    assert join.expire(0, now=5) == 3
