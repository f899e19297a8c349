"""Account arguments of CLI commands: from the text a user types to a key pair or an account id.

Accepted forms (parentchain and trusted commands alike):
- `//Name` (and any secret URI starting with `//`): derivation from the dev phrase;
- `0x<64 hex digits>` (optionally followed by a derivation path): a 32-byte seed when a key is
  needed; in positions that only name an account (recipients, balance queries) a bare
  `0x<64 hex digits>` is the account's public key instead;
- an ss58 address: for signing, the key is looked up in the keystore; otherwise any network
  prefix is accepted;
- a BIP39 mnemonic phrase (optionally with a derivation path).

Error messages never repeat seeds or phrases.
"""

from __future__ import annotations

import re

from integritee.cli.keystore import (
    ED25519_KEY_TYPE,
    SR25519_KEY_TYPE,
    KeystoreError,
    LocalKeystore,
)
from integritee.crypto import Keypair, SuriError, ss58_decode, ss58_encode

DEFAULT_SS58_PREFIX = 42
_HEX_ACCOUNT_RE = re.compile(r"0x[0-9a-fA-F]{64}")
_SHOWN_CHARS = 60
_FORMS = "//Name, a 0x seed, an ss58 address from the keystore or a mnemonic phrase"


class AccountError(ValueError):
    """An account argument that names no usable account or key."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise AccountError(f"account must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise AccountError("empty account argument")
    return stripped


def _from_uri(suri: str, crypto: str, what: str) -> Keypair:
    try:
        return Keypair.from_uri(suri, crypto)
    except SuriError as e:
        raise AccountError(f"invalid {what}: {e}") from None


def _is_phrase(text: str) -> bool:
    return " " in text.split("/", 1)[0]


def resolve_signer(
    text: str, keystore: LocalKeystore | None = None, crypto: str = "sr25519"
) -> Keypair:
    """The key pair an account argument stands for (to sign with it)."""
    account = _check_text(text)
    if account.startswith("//"):
        return _from_uri(account, crypto, "derivation path")
    if account.startswith("0x"):
        return _from_uri(account, crypto, "hex seed (expected 0x and 64 hex digits)")
    if _is_phrase(account):
        return _from_uri(account, crypto, "mnemonic phrase")
    try:
        public = ss58_decode(account)
    except ValueError as e:
        raise AccountError(f"invalid account {_shown(account)}: {e}; expected {_FORMS}") from None
    if keystore is None:
        raise AccountError(f"account {account} cannot sign: no keystore to look it up in")
    key_type = SR25519_KEY_TYPE if crypto == "sr25519" else ED25519_KEY_TYPE
    try:
        pair = keystore.keypair(public, key_type, crypto)
    except KeystoreError as e:
        raise AccountError(str(e)) from None
    if pair is None:
        raise AccountError(f"account {account} is not in the keystore {keystore.path}")
    return pair


def resolve_account_id(text: str, crypto: str = "sr25519") -> bytes:
    """The 32-byte account id an account argument names (no secret needed)."""
    account = _check_text(text)
    if _HEX_ACCOUNT_RE.fullmatch(account):
        return bytes.fromhex(account[2:])
    if account.startswith(("//", "0x")) or _is_phrase(account):
        return resolve_signer(account, None, crypto).public_key
    try:
        return ss58_decode(account)
    except ValueError as e:
        raise AccountError(
            f"invalid account {_shown(account)}: {e}; expected //Name, an ss58 address, "
            "a 0x public key or a mnemonic phrase"
        ) from None


def ss58(account_id: bytes, prefix: int = DEFAULT_SS58_PREFIX) -> str:
    return ss58_encode(account_id, prefix)
