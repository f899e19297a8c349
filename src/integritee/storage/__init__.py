"""Persistent key-value storage (RocksDB) shared by the node, the enclave and the service."""

from integritee.storage.kv import KVStore, KVStoreClosedError, KVStoreError, KVView, WriteBatch

__all__ = ["KVStore", "KVStoreClosedError", "KVStoreError", "KVView", "WriteBatch"]
