"""Read proofs: generation, verification, strictness (tampered, dropped, extra, duplicate nodes),
and a real state-version-1 proof from a live chain."""

from __future__ import annotations

import contextlib
import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.trie import (
    EMPTY_NODE,
    EMPTY_ROOT,
    InvalidProof,
    Node,
    Trie,
    TrieError,
    decode_node,
    encode_node,
    verify_proof,
)


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def build(items: dict[bytes, bytes], version: int = 1) -> Trie:
    trie = Trie({}, state_version=version)
    for k, v in items.items():
        trie.set(k, v)
    return trie


def sample_trie() -> tuple[Trie, dict[bytes, bytes]]:
    rnd = random.Random(11)
    items = {
        rnd.randbytes(rnd.choice([1, 2, 32])): rnd.randbytes(rnd.choice([1, 20, 40, 90]))
        for _ in range(300)
    }
    items[b"\x01\x02"] = b"short"
    items[b"\x01\x02\x03"] = b"x" * 64  # a value under a branch, hashed in v1
    return build(items), items


def test_present_and_absent_keys() -> None:
    trie, items = sample_trie()
    root = trie.root()
    present = [b"\x01\x02", b"\x01\x02\x03", *list(items)[:20]]
    absent = [b"\x01\x02\x03\x04", b"\xee" * 40, b"", b"\x01"]
    absent = [k for k in absent if k not in items]
    proof = trie.read_proof(present + absent)
    assert len(proof) == len(set(proof))
    result = verify_proof(root, proof, present + absent)
    assert result == {**{k: items[k] for k in present}, **dict.fromkeys(absent)}
    # Hashed values travel in the proof; inline nodes never appear on their own.
    assert b"x" * 64 in proof
    for node in proof:
        assert len(node) >= 32 or blake2_256(node) == root


def test_proof_at_an_older_root_from_the_store() -> None:
    store: dict[bytes, bytes] = {}
    trie = Trie(store)
    for i in range(100):
        trie.set(bytes([i]) * 2, bytes([i]) * 50)
    old_root, nodes = trie.commit()
    store.update(nodes)
    trie.set(b"\x05\x05", b"new")
    new_root, nodes = trie.commit()
    store.update(nodes)
    old = Trie(store, old_root)
    proof = old.read_proof([b"\x05\x05"])
    assert verify_proof(old_root, proof, [b"\x05\x05"]) == {b"\x05\x05": b"\x05" * 50}
    with pytest.raises(InvalidProof):
        verify_proof(new_root, proof, [b"\x05\x05"])


def test_every_single_byte_change_and_every_dropped_node_is_rejected() -> None:
    trie, items = sample_trie()
    root = trie.root()
    keys = [b"\x01\x02\x03", next(iter(items)), b"\xee" * 3]
    proof = trie.read_proof(keys)
    expected = verify_proof(root, proof, keys)
    assert len(proof) >= 4
    for i, node in enumerate(proof):
        for pos in range(len(node)):
            tampered = bytearray(node)
            tampered[pos] ^= 0x01
            bad = [*proof[:i], bytes(tampered), *proof[i + 1 :]]
            with pytest.raises(InvalidProof):
                verify_proof(root, bad, keys)
        with pytest.raises(InvalidProof):
            verify_proof(root, proof[:i] + proof[i + 1 :], keys)
    assert verify_proof(root, list(reversed(proof)), keys) == expected


def test_extra_duplicate_and_foreign_nodes_are_rejected() -> None:
    trie, items = sample_trie()
    root = trie.root()
    key = next(iter(items))
    proof = trie.read_proof([key])
    other = trie.read_proof([b"\x01\x02\x03"])
    extra = next(n for n in other if n not in proof)
    with pytest.raises(InvalidProof, match="not needed"):
        verify_proof(root, [*proof, extra], [key])
    with pytest.raises(InvalidProof, match="duplicate"):
        verify_proof(root, [*proof, proof[0]], [key])
    with pytest.raises(InvalidProof, match="not needed"):
        verify_proof(root, [*proof, b"\x42\xaa\x04\xbb"], [key])
    # Verifying a subset of the keys a proof was made for leaves nodes unused.
    both = trie.read_proof([key, b"\x01\x02\x03"])
    with pytest.raises(InvalidProof):
        verify_proof(root, both, [key])
    with pytest.raises(InvalidProof):
        verify_proof(blake2_256(b"other"), proof, [key])
    with pytest.raises(InvalidProof):
        verify_proof(root[:31], proof, [key])


def test_malformed_root_node_is_rejected() -> None:
    garbage = b"\x01\x02\x03"
    with pytest.raises(InvalidProof, match="malformed"):
        verify_proof(blake2_256(garbage), [garbage], [b"k"])
    bad_child = bytes([0x80, 0x01, 0x00, 0x80]) + blake2_256(b"\x05\x06")
    with pytest.raises(InvalidProof, match="malformed"):
        verify_proof(blake2_256(bad_child), [bad_child, b"\x05\x06"], [b"\x00"])


def test_empty_trie_proofs() -> None:
    assert Trie({}).read_proof([b"a"]) == [EMPTY_NODE]
    assert Trie({}).read_proof([]) == []
    assert verify_proof(EMPTY_ROOT, [EMPTY_NODE], [b"a"]) == {b"a": None}
    assert verify_proof(EMPTY_ROOT, [], [b"a"]) == {b"a": None}
    with pytest.raises(InvalidProof):
        verify_proof(EMPTY_ROOT, [b"\x42\xaa\x04\xbb"], [b"a"])
    trie = build({b"a": b"1"})
    assert trie.read_proof([]) == []
    assert verify_proof(trie.root(), [], []) == {}


def test_small_root_node_is_in_the_proof() -> None:
    trie = build({b"a": b"1"})
    proof = trie.read_proof([b"a", b"b"])
    assert proof == [bytes([0x42, 0x61, 0x04, 0x31])]
    assert verify_proof(trie.root(), proof, [b"a", b"b"]) == {b"a": b"1", b"b": None}


keys_st = st.lists(st.sampled_from([0x00, 0x01, 0x10, 0x11, 0xF0, 0xFF]), max_size=4).map(bytes)


@given(
    st.dictionaries(keys_st, st.binary(max_size=80), max_size=30),
    st.lists(keys_st, max_size=6),
    st.sampled_from([0, 1]),
    st.data(),
)
@settings(max_examples=200, deadline=None)
def test_proofs_verify_and_resist_tampering(
    items: dict[bytes, bytes], queried: list[bytes], version: int, data: st.DataObject
) -> None:
    trie = build(items, version)
    root = trie.root()
    query = list(items)[:3] + queried
    proof = trie.read_proof(query)
    assert verify_proof(root, proof, query) == {k: items.get(k) for k in query}
    if not query or not items:
        return
    i = data.draw(st.integers(0, len(proof) - 1))
    pos = data.draw(st.integers(0, len(proof[i]) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(proof[i])
    tampered[pos] ^= flip
    with pytest.raises(InvalidProof):
        verify_proof(root, [*proof[:i], bytes(tampered), *proof[i + 1 :]], query)
    with pytest.raises(InvalidProof):
        verify_proof(root, proof[:i] + proof[i + 1 :], query)


@given(st.lists(st.binary(max_size=60), max_size=6), st.lists(keys_st, max_size=3))
@settings(max_examples=300, deadline=None)
def test_arbitrary_proofs_raise_only_invalid_proof(nodes: list[bytes], query: list[bytes]) -> None:
    for root in [blake2_256(n) for n in nodes[:2]] + [EMPTY_ROOT]:
        with contextlib.suppress(InvalidProof):
            verify_proof(root, nodes, query)


def test_large_values_in_version_1() -> None:
    rnd = random.Random(5)
    items = {rnd.randbytes(8): rnd.randbytes(rnd.randint(0, 5000)) for _ in range(100)}
    trie = build(items, 1)
    root = trie.root()
    keys = list(items)[:10]
    proof = trie.read_proof(keys)
    hashed = [items[k] for k in keys if len(items[k]) >= 33]
    assert all(v in proof for v in hashed)
    assert verify_proof(root, proof, keys) == {k: items[k] for k in keys}
    # A value swapped for another of the same length is rejected (its hash no longer matches).
    big = max(hashed, key=len)
    forged = [n if n != big else bytes(len(big)) for n in proof]
    with pytest.raises(InvalidProof):
        verify_proof(root, forged, keys)


# ---------------------------------------------------------------------------------------------
# A real state-version-1 proof: the nodes proving one storage value of a live Polkadot-ecosystem
# chain (state root below), extracted from the proof published in smoldot's test suite
# (lib/src/trie/proof_decode/issue_2035_proof). Its leaf stores a 51-byte value hashed (header
# 0b001), so this checks the v1 node format, value hashing and proof checking against Substrate.

REAL_V1_ROOT = bytes.fromhex("f72fa98efbf23c21d162a6690a2412d0b2e3d2e769cab46a7eb6004138ebeda7")
REAL_V1_KEY = bytes.fromhex(
    "63f78c98723ddc9073523ef3beefda0ca95dac46c07a40d91506e7637ec4ba5756ee3538cfd62cb8170d0000"
)
REAL_V1_VALUE = bytes.fromhex(
    "0403de3701b40308030003040000000000002c23d93e6a534de64470ba0cb98e6c61e610d41d624689de256aa474"
    "20a66dd439"
)
REAL_V1_PROOF = [
    bytes.fromhex(
        "80ffff80a733a24fa43818b82e4536f8ca1bc8dac81b440556f63c99f40d2dc5f59a7bf8805bcf87df3b1255"
        "6d93359afde586f72d5f7ff200aeee1596365a81f9e654efca8077ea133e966fc054389a837e13fff0c11fad"
        "961c30e7b7a91b52c421777557908076d76397d091bc1d403fe2eb9885268285b232dd7a26b11271e9a3ca37"
        "f9cbee8056c83873cbce458e1bd83950e65b64c8a64f726f9cd5a90ffe883bd6c940e4a880ccd7a12be113ec"
        "921427c8063206ea52f3d8410fb834d68fe92e1c62a1b7769380e505e75019a43d90c85001da3db4cbabb768"
        "21b3c397fa71d22c8db5a4ac6db180a083a2b0276089158f6f2ab29b40d5d752f97ed2b60940eca058b37921"
        "9673d6807c3d38cdfd7a875bc147bdef86227c7a9ab96ca7a6069f7db9060d4adcc1957a808801dbc0198e66"
        "0eb7299dad04d78bd315b26633900c94c94a6208b465d939238043e33b3464844af9a8ca5d90a74025d063b7"
        "c8abc972552fc6dd4bee00ae1f0a801892b89750d2e97f0040826b07effd5d196742c0e03706da0b347ee024"
        "577d8a800c40cb68923ed29f948f32cf06fe9f8c8e112782ca3dbe74c1c23483bd393f5980f05206165191ab"
        "9342ad78cc811f2c5041f3cd225b89d3c0f7a1f3c2ac89c60180872737c380169a28d63974bebcf544544911"
        "9a73bd2af4ae1983d5e7070ba39e80c090975fc02c93dbf56c22656789e68336bb700e7b70348a3037cd1763"
        "3214f0"
    ),
    bytes.fromhex(
        "80880580a2594e56ad1daea0faa8d338212a1949601d289718b4321d77d72b952eaded28804192145190e1ec"
        "eeaa03841737caddbb50225426bcc9362eb5a71a3ca91c7bce8093617f28e050965a14e7f7a625faf4a2fc18"
        "87d468374e9be51b794c0adfd8b780d3242777bf9460be2b23bccf5547db97066ad783e5506120e619ccc5d6"
        "2a707e"
    ),
    bytes.fromhex(
        "8000818027aa9585d27276a57efb52577204146bf2cd0be8269dea2e7a0956a39ef40a1b801b31ec2569c532"
        "278b68bd9fa31a691e7f2b7b4af449badd7f385c2f97a20d5d"
    ),
    bytes.fromhex(
        "9d078c98723ddc9073523ef3beefda0c104480e218944c753cd37790df3032b975276c1308d1da11c06da9ec"
        "5aa18175fe41388061371548d7942a01c0f14ac5ce8186b3b9ca108fba28dd4dfef77efc9e9f6baa80ee1637"
        "d59c26f67a52b8d0f0fcf38c1878fb381ec474c5e2d2e6225bf12aafaa"
    ),
    bytes.fromhex(
        "9f095dac46c07a40d91506e7637ec4ba57ffff8095b4130990646fee4a2b99d9d41ad0c788cd0e8fae90db1c"
        "a487c9a66b1a12e83c57060394315fe95b98f30700000400807ea193968bf9197f2de50b3f952fab81f797ff"
        "9f68ddc5e7b913bf1c2fd157ad806609e1032b7dcb02c4b4eff9044214313c86ab3ba96bd38c096e8c009c60"
        "360c804ee5907a5affa17085454047930065fb2fedeb5ded966e2c61be23aba965b33f80bd8cae421d73c94a"
        "9fffb9dba37f49240cdf733eee529b20340449862ccb516e80c4305d4f7a04fcd97e0ca89300be2a301aabfc"
        "99d5567b560ee8fb5009c72dd880f0983ef369066eef18b27c198acadced43427880e649fc990c56af0dc22f"
        "d6ba80bcab958b811d3385497541063e82a8dbffb897676a6e9f46a02805e3f7ceee1f80f4cac68abff4d33b"
        "25fffcafe308069a980c27650be463a8eacf5f4b9a5462e680f9a4ea5900d7d0d96b816f417e42838ad425dd"
        "34f32b5a6d0196de6fc589dc888073ce4366691338bb759bac3cdcf0f79416bdcf7edea89881a2b29ad91ab1"
        "9a27803f90741eb66611247ae7acdd944fb9c67a9080994af102149135f2f62b7390c380457586f15290c89b"
        "692cb4954ea7a2fd567df5673fecd2b243bf72f3af3223813c570bdb9c0b8c73ab9e3c0d00000400800effd3"
        "a1d698b053089b405e6bd8b3f966d5f803d3d3fa6851c10d0aa4ac4216"
    ),
    bytes.fromhex(
        "804080800d605bdef7453a1edccb6595bbed84998a8872136f3b210f6a1254bf269d2c4c38569d7e46afdef8"
        "38d80700000400"
    ),
    bytes.fromhex(
        "36ee3538cfd62cb8170d00000f65de73629ad9f65508153c4fe7d47294794f7d3cfba31dd94126b29f138c71"
    ),
    bytes.fromhex(
        "0403de3701b40308030003040000000000002c23d93e6a534de64470ba0cb98e6c61e610d41d624689de256a"
        "a47420a66dd439"
    ),
]


def test_real_state_version_1_proof() -> None:
    assert verify_proof(REAL_V1_ROOT, REAL_V1_PROOF, [REAL_V1_KEY]) == {REAL_V1_KEY: REAL_V1_VALUE}
    assert REAL_V1_VALUE in REAL_V1_PROOF
    # Every trie node re-encodes byte for byte, including the hashed-value leaf.
    leaves_with_hashed_value = 0
    for enc in REAL_V1_PROOF:
        if enc == REAL_V1_VALUE:
            continue
        node = decode_node(enc)
        assert node is not None
        if node.children is None and node.vhash is not None:
            leaves_with_hashed_value += 1
            assert node.vhash == blake2_256(REAL_V1_VALUE)
        node.enc = None
        for child in node.children or ():
            if isinstance(child, Node):
                child.enc = None
                child.enc = encode_node(child)
        assert encode_node(node) == enc
    assert leaves_with_hashed_value == 1
    # Our trie, opened on the proof as its store, regenerates the whole path and the root.
    trie = Trie({blake2_256(n): n for n in REAL_V1_PROOF}, REAL_V1_ROOT, state_version=1)
    assert trie.get(REAL_V1_KEY) == REAL_V1_VALUE
    trie.set(REAL_V1_KEY, b"something else")
    assert trie.root() != REAL_V1_ROOT
    trie.set(REAL_V1_KEY, REAL_V1_VALUE)
    assert trie.root() == REAL_V1_ROOT
    assert sorted(trie.read_proof([REAL_V1_KEY])) == sorted(REAL_V1_PROOF)
    # A state-version-0 writer would store that value inline: a different root.
    trie0 = Trie({blake2_256(n): n for n in REAL_V1_PROOF}, REAL_V1_ROOT, state_version=0)
    trie0.set(REAL_V1_KEY, REAL_V1_VALUE)
    assert trie0.root() != REAL_V1_ROOT
    with pytest.raises(TrieError):
        decode_node(REAL_V1_PROOF[0][:-1])
