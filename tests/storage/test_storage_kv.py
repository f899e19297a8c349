"""Tests of the RocksDB key-value store: operations, namespaces, batches, durability on SIGKILL."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integritee.storage import KVStore, KVStoreClosedError, KVStoreError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KVStore]:
    kv = KVStore.open(tmp_path / "db")
    try:
        yield kv
    finally:
        kv.close()


def test_put_get_delete(store: KVStore) -> None:
    assert store.get(b"missing") is None
    store.put(b"k", b"v")
    assert store.get(b"k") == b"v"
    store.put(b"k", b"")
    assert store.get(b"k") == b""  # an empty value is not a missing one
    assert b"k" in store
    store.delete(b"k")
    assert store.get(b"k") is None
    store.delete(b"never-there")  # deleting a missing key is fine


def test_keys_and_values_must_be_bytes(store: KVStore) -> None:
    store.put(bytearray(b"ba"), memoryview(b"mv"))
    assert store.get(b"ba") == b"mv"
    with pytest.raises(TypeError):
        store.put("text", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put(b"k", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.get("text")  # type: ignore[arg-type]


def test_binary_keys_roundtrip(store: KVStore) -> None:
    keys = [b"\x00", b"\x00\x00", b"\xff", b"\xff\xff\x00", bytes(range(256))]
    for i, key in enumerate(keys):
        store.put(key, bytes([i]) * 3)
    assert store.get_many(keys + [b"\x01"]) == [bytes([i]) * 3 for i in range(len(keys))] + [None]
    assert store.get_many([]) == []


def test_iter_prefix_is_ordered_and_bounded(store: KVStore) -> None:
    for key in [b"b", b"a\xff", b"a", b"a\x00", b"ab", b"\xff\xff", b"\xff", b"ac", b"b\x00"]:
        store.put(key, key.upper())
    assert [k for k, _ in store.iter_prefix(b"a")] == [b"a", b"a\x00", b"ab", b"ac", b"a\xff"]
    assert list(store.iter_prefix(b"ab")) == [(b"ab", b"AB")]
    assert [k for k, _ in store.iter_prefix(b"\xff")] == [b"\xff", b"\xff\xff"]
    assert [k for k, _ in store.iter_prefix(b"\xff\xff")] == [b"\xff\xff"]
    assert list(store.iter_prefix(b"zz")) == []
    everything = [k for k, _ in store.iter_prefix()]
    assert everything == sorted(everything) and len(everything) == 9


_examples = itertools.count()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entries=st.dictionaries(st.binary(max_size=4), st.binary(max_size=3), max_size=25),
    prefix=st.binary(max_size=2),
)
def test_iter_prefix_matches_a_model(
    store: KVStore, entries: dict[bytes, bytes], prefix: bytes
) -> None:
    # A fresh namespace per example; its neighbours' keys must never leak into its iteration.
    view = store.prefixed(b"ex%06d/" % next(_examples))
    with view.batch() as batch:
        for key, value in entries.items():
            batch.put(key, value)
    expected = sorted((k, v) for k, v in entries.items() if k.startswith(prefix))
    assert list(view.iter_prefix(prefix)) == expected
    assert view.get_many(list(entries)) == list(entries.values())


def test_iteration_sees_a_snapshot(store: KVStore) -> None:
    for i in range(5):
        store.put(b"n" + bytes([i]), b"old")
    seen = []
    for key, value in store.iter_prefix(b"n"):
        store.put(b"n" + bytes([9]), b"added during iteration")
        store.put(b"n" + bytes([4]), b"changed")
        seen.append((key, value))
    assert seen == [(b"n" + bytes([i]), b"old") for i in range(5)]


def test_namespaces_are_isolated(store: KVStore) -> None:
    headers = store.prefixed(b"hdr:")
    blocks = store.prefixed(b"blk:")
    headers.put(b"1", b"header one")
    blocks.put(b"1", b"block one")
    assert headers.get(b"1") == b"header one"
    assert blocks.get(b"1") == b"block one"
    assert store.get(b"hdr:1") == b"header one"
    assert list(headers.iter_prefix()) == [(b"1", b"header one")]
    nested = blocks.prefixed(b"x/")
    nested.put(b"k", b"v")
    assert store.get(b"blk:x/k") == b"v"
    assert [k for k, _ in blocks.iter_prefix()] == [b"1", b"x/k"]
    assert store.prefixed(b"hdr:").get(b"1") == b"header one"  # same name again is fine


def test_overlapping_sibling_namespaces_are_refused(store: KVStore) -> None:
    store.prefixed(b"ab")
    with pytest.raises(ValueError):
        store.prefixed(b"a")
    with pytest.raises(ValueError):
        store.prefixed(b"abc")
    with pytest.raises(ValueError):
        store.prefixed(b"")


def test_batch_writes_atomically_on_success(store: KVStore) -> None:
    store.put(b"gone", b"x")
    with store.batch() as batch:
        batch.put(b"a", b"1")
        batch.delete(b"gone")
        batch.prefixed(b"ns:").put(b"b", b"2")
        assert len(batch) == 3
        assert store.get(b"a") is None  # nothing applied before the write
    assert batch.written
    assert store.get_many([b"a", b"gone", b"ns:b"]) == [b"1", None, b"2"]
    with pytest.raises(RuntimeError):
        batch.put(b"c", b"3")
    with pytest.raises(RuntimeError):
        store.write(batch)


def test_batch_discarded_on_exception(store: KVStore) -> None:
    with pytest.raises(ZeroDivisionError), store.batch() as batch:
        batch.put(b"a", b"1")
        raise ZeroDivisionError
    assert store.get(b"a") is None


def test_view_batch_and_explicit_write(store: KVStore) -> None:
    view = store.prefixed(b"v:")
    batch = view.batch()
    batch.put(b"k", b"1")
    view.write(batch)
    assert store.get(b"v:k") == b"1"


def test_batch_of_another_store_is_refused(store: KVStore, tmp_path: Path) -> None:
    other = KVStore.open(tmp_path / "other")
    try:
        batch = other.batch()
        batch.put(b"k", b"v")
        with pytest.raises(ValueError):
            store.write(batch)
    finally:
        other.close()


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    kv = KVStore.open(tmp_path / "nested" / "dirs" / "db")
    kv.put(b"k", b"v")
    view = kv.prefixed(b"p:")
    batch = kv.batch()
    kv.close()
    kv.close()
    assert kv.closed
    for operation in (
        lambda: kv.get(b"k"),
        lambda: kv.put(b"k", b"v"),
        lambda: kv.delete(b"k"),
        lambda: kv.get_many([b"k"]),
        lambda: list(kv.iter_prefix()),
        lambda: view.get(b"k"),
        lambda: kv.batch(),
        lambda: kv.write(batch),
    ):
        with pytest.raises(KVStoreClosedError):
            operation()
    reopened = KVStore.open(tmp_path / "nested" / "dirs" / "db")
    try:
        assert reopened.get(b"k") == b"v"
    finally:
        reopened.close()


def test_second_open_of_a_locked_store_fails(store: KVStore) -> None:
    with pytest.raises(KVStoreError):
        KVStore.open(store.path)


def test_sync_mode_works(tmp_path: Path) -> None:
    with KVStore.open(tmp_path / "db", sync=True) as kv:
        kv.put(b"k", b"v")
        assert kv.get(b"k") == b"v"


_WRITER = textwrap.dedent(
    """
    import sys
    from integritee.storage import KVStore

    kv = KVStore.open(sys.argv[1])
    with kv.batch() as batch:
        for i in range(1000):
            batch.put(b"key%04d" % i, b"value%04d" % i)
    kv.put(b"single", b"put")
    print("written", flush=True)
    # Keep running (and never close) until killed.
    sys.stdin.read()
    """
)


def test_written_batch_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with KVStore.open(path) as kv:
        items = list(kv.iter_prefix(b"key"))
        assert len(items) == 1000
        assert items[7] == (b"key0007", b"value0007")
        assert kv.get(b"single") == b"put"


_CHURNER = textwrap.dedent(
    """
    import sys
    from integritee.storage import KVStore

    kv = KVStore.open(sys.argv[1])
    round_ = 0
    while True:
        round_ += 1
        with kv.batch() as batch:
            for i in range(200):
                batch.put(b"k%03d" % i, b"%d" % round_ + b"." * 500)
        if round_ == 5:
            print("running", flush=True)
    """
)


def test_batch_is_atomic_when_killed_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHURNER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with KVStore.open(path) as kv:
        values = [v for _, v in kv.iter_prefix(b"k")]
    assert len(values) == 200
    rounds = {v.split(b".")[0] for v in values}
    assert len(rounds) == 1, f"a batch was applied partially: rounds {sorted(rounds)}"
    assert int(rounds.pop()) >= 5
