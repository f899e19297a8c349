"""The enclave's batched RSA decryption: every caller gets its own plaintext or its own error,
however the submissions are grouped into batches, and the event loop keeps serving meanwhile."""

from __future__ import annotations

import asyncio
import os

import pytest

from integritee.crypto.shielding import ShieldingError, ShieldingKey
from integritee.enclave.trusted_rpc import BatchDecryptor


@pytest.fixture(scope="module")
def key() -> ShieldingKey:
    return ShieldingKey.generate()


async def test_each_caller_gets_its_own_plaintext_or_error(key: ShieldingKey) -> None:
    decryptor = BatchDecryptor(key.decrypt)
    messages = [os.urandom(32) for _ in range(150)]
    ciphertexts = [key.encrypt(m) for m in messages]
    # every fifth one is garbage: its caller alone gets the error
    for i in range(0, len(ciphertexts), 5):
        ciphertexts[i] = os.urandom(384)
    results = await asyncio.gather(
        *(decryptor.decrypt(c) for c in ciphertexts), return_exceptions=True
    )
    for i, (message, result) in enumerate(zip(messages, results, strict=True)):
        if i % 5 == 0:
            assert isinstance(result, ShieldingError), result
        else:
            assert result == message
    assert decryptor._running == 0 and not decryptor._waiting


async def test_submissions_while_busy_are_batched_and_the_loop_keeps_running(
    key: ShieldingKey,
) -> None:
    batches: list[int] = []

    class Counting(BatchDecryptor):
        def _decrypt_all(self, ciphertexts: list[bytes]) -> list[bytes | Exception]:
            batches.append(len(ciphertexts))
            return super()._decrypt_all(ciphertexts)

    decryptor = Counting(key.decrypt)
    messages = [os.urandom(16) for _ in range(200)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*(decryptor.decrypt(key.encrypt(m)) for m in messages))
    finally:
        task.cancel()
    assert results == messages
    assert sum(batches) == 200
    assert len(batches) < 200, "operations queued while the threads were busy share a batch"
    assert max(batches) <= BatchDecryptor.MAX_BATCH
    assert ticks > 0


async def test_the_current_key_is_used_for_each_batch() -> None:
    first, second = ShieldingKey.generate(), ShieldingKey.generate()
    current = {"key": first}
    decryptor = BatchDecryptor(lambda c: current["key"].decrypt(c))
    assert await decryptor.decrypt(first.encrypt(b"one")) == b"one"
    current["key"] = second  # provisioning replaced the shard's shielding key
    assert await decryptor.decrypt(second.encrypt(b"two")) == b"two"
    with pytest.raises(ShieldingError):
        await decryptor.decrypt(first.encrypt(b"old key"))
