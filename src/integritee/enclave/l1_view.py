"""What the enclave remembers of the parentchain for its shard, beyond the light client itself.

- **Block index**: hash -> number of every imported parentchain block, so a sidechain block's
  `layer_one_head` can be checked and placed however old it is (the light client keeps only the
  recent state roots).
- **Authorities**: the signers of `EnclaveBridge.ShardStatus(shard)` as proven at each imported
  block (recorded where they change). The Aura authorities of a sidechain block are the ones at its
  `layer_one_head`, so every validateer derives the same set for the same block.
- **Inbox**: the work that each parentchain block carries for the shard (decrypted indirect calls,
  shields), kept until a sidechain block executes it. Every validateer extracts the same inbox
  from the same finalized blocks; only the author of the sidechain block that first moves the
  shard's parentchain head past a block executes that block's inbox, so nothing runs twice.

Inbox entries hold decrypted calls: they are encrypted with the state key at rest. The rest is
public parentchain data. Writes go into the caller's batch together with the light client.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from integritee.codec.scale import (
    Bytes,
    Enum,
    EnumValue,
    ScaleDecodeError,
    Struct,
    Tuple,
    Vec,
    u32,
    variant,
)
from integritee.crypto import aead
from integritee.crypto.aead import AeadError
from integritee.storage.kv import KVStore, WriteBatch

INBOX_AAD = b"integritee/enclave/inbox/v1"

# SCALE TrustedCallSigned (a user's indirect call) | SCALE TrustedCall (run as the shard signer)
InboxItem = Enum(
    "InboxItem", [variant("Call", 0, (None, Bytes)), variant("EnclaveCall", 1, (None, Bytes))]
)
InboxItems = Vec(InboxItem)
Authorities = Vec(Bytes)
ViewExport = Struct(
    "ParentchainViewExport",
    [
        ("index", Vec(Tuple(Bytes, u32))),
        ("authorities", Vec(Tuple(u32, Authorities))),
        ("inbox", Vec(Tuple(u32, InboxItems))),
    ],
)


class ViewError(ValueError):
    pass


def _be(number: int) -> bytes:
    return struct.pack(">Q", number)


@dataclass
class ParentchainView:
    db: KVStore
    shard: bytes
    state_key: bytes

    def __post_init__(self) -> None:
        self._index = self.db.prefixed(b"l1/index/")
        self._auth = self.db.prefixed(b"l1/authorities/" + self.shard)
        self._inbox = self.db.prefixed(b"l1/inbox/" + self.shard)
        self._changes: list[tuple[int, list[bytes]]] = []
        # recorded into a batch not known to be written yet: `commit_staged` after the write,
        # `drop_staged` when the batch was discarded
        self._staged: list[tuple[int, list[bytes]]] = []
        for key, value in self._auth.iter_prefix(b""):
            self._changes.append((struct.unpack(">Q", key)[0], list(Authorities.decode(value))))

    # --- block index
    def number_of(self, block_hash: bytes) -> int | None:
        raw = self._index.get(bytes(block_hash))
        return None if raw is None else int.from_bytes(raw, "big")

    def record_block(self, batch: WriteBatch, block_hash: bytes, number: int) -> None:
        batch.prefixed(self._index.prefix).put(bytes(block_hash), number.to_bytes(4, "big"))

    # --- authorities
    def authorities_at(self, number: int) -> list[bytes]:
        """The shard's signers as of parentchain block `number` (empty before any is known)."""
        changes = self._changes + self._staged
        i = bisect.bisect_right(changes, number, key=lambda c: c[0])
        return list(changes[i - 1][1]) if i else []

    def record_authorities(self, batch: WriteBatch, number: int, signers: list[bytes]) -> bool:
        """Remember the signers at `number` if they changed; True when they did."""
        last = (self._changes + self._staged)[-1] if self._changes or self._staged else None
        if last is not None and last[0] >= number:
            return False  # already known (a replayed block)
        if last is not None and last[1] == signers:
            return False
        batch.prefixed(self._auth.prefix).put(_be(number), Authorities.encode(signers))
        self._staged.append((number, list(signers)))
        return True

    def commit_staged(self) -> None:
        """The batch holding the recorded authorities was written."""
        self._changes += self._staged
        self._staged = []

    def drop_staged(self) -> None:
        """The batch holding the recorded authorities was discarded."""
        self._staged = []

    # --- inbox
    def add_inbox(self, batch: WriteBatch, number: int, items: list[EnumValue]) -> None:
        plain = InboxItems.encode(items)
        key = _be(number)
        batch.prefixed(self._inbox.prefix).put(
            key, aead.encrypt(self.state_key, plain, INBOX_AAD + self.shard + key)
        )

    def inbox_between(self, after: int, up_to: int) -> list[tuple[int, list[EnumValue]]]:
        """Inbox entries of blocks `after < number <= up_to`, oldest first."""
        out = []
        for key, blob in self._inbox.iter_prefix(b""):
            number = struct.unpack(">Q", key)[0]
            if number <= after or number > up_to:
                continue
            try:
                plain = aead.decrypt(self.state_key, blob, INBOX_AAD + self.shard + key)
                out.append((number, list(InboxItems.decode(plain))))
            except (AeadError, ScaleDecodeError) as e:
                raise ViewError(
                    f"inbox entry of parentchain block #{number} unusable: {e}"
                ) from None
        out.sort(key=lambda e: e[0])
        return out

    def prune_inbox(self, batch: WriteBatch, up_to: int) -> None:
        """Drop entries of blocks `<= up_to` (executed in a sidechain block)."""
        view = batch.prefixed(self._inbox.prefix)
        for key, _ in self._inbox.iter_prefix(b""):
            if struct.unpack(">Q", key)[0] <= up_to:
                view.delete(key)

    # --- provisioning (MU-RA): what a joiner needs from the provider's view
    def export(self, from_number: int, block_hashes: Iterable[tuple[bytes, int]]) -> bytes:
        """Index entries `block_hashes`, authorities from the change at or before `from_number`
        on, and the inbox after `from_number`."""
        changes = self._changes + self._staged
        first = max(0, bisect.bisect_right(changes, from_number, key=lambda c: c[0]) - 1)
        return ViewExport.encode(
            {
                "index": [(bytes(h), n) for h, n in block_hashes],
                "authorities": [(n, a) for n, a in changes[first:]],
                "inbox": self.inbox_between(from_number, 2**32),
            }
        )

    def import_(self, batch: WriteBatch, data: bytes) -> None:
        """Stage a provider's export into `batch` (all of it checked before anything is staged)."""
        try:
            value = ViewExport.decode(data)
        except ScaleDecodeError as e:
            raise ViewError(f"parentchain view export does not decode: {e}") from None
        if any(len(block_hash) != 32 for block_hash, _ in value["index"]):
            raise ViewError("a parentchain block hash is 32 bytes")
        if any(len(s) != 32 for _, signers in value["authorities"] for s in signers):
            raise ViewError("an authority is a 32-byte account")
        for block_hash, number in value["index"]:
            self.record_block(batch, bytes(block_hash), number)
        for number, signers in value["authorities"]:
            self.record_authorities(batch, number, [bytes(s) for s in signers])
        for number, items in value["inbox"]:
            self.add_inbox(batch, number, list(items))
