"""The attestation layer's exception hierarchy.

Every failure on untrusted input (a quote, a certificate chain, Intel's JSON collateral, a CRL)
surfaces as one of these, never as a bare ValueError/KeyError/IndexError, so that callers such as
the Teerex pallet can map them to one dispatch error and the MU-RA code to one handshake failure.
"""

from __future__ import annotations


class AttestationError(Exception):
    """Base class: the attestation evidence was rejected (or could not be produced)."""


class QuoteFormatError(AttestationError):
    """The quote bytes are malformed: wrong length, version, key type, trailing data."""


class CertificateError(AttestationError):
    """A certificate or chain is malformed, does not chain to the trusted root, or violates
    CA constraints."""


class RevokedError(CertificateError):
    """A certificate of the chain is listed in an applicable CRL."""


class SignatureError(AttestationError):
    """An ECDSA signature (quote, QE report, collateral, certificate) does not verify."""


class CollateralError(AttestationError):
    """QE identity / TCB info JSON is malformed, of an unsupported version, or does not fit the
    quote (e.g. TCB info for another FMSPC)."""


class IdentityError(AttestationError):
    """The quoting enclave's report does not match the registered QE identity."""


class TcbError(AttestationError):
    """The platform or QE TCB is revoked or matches no TCB level."""


class ExpiredError(AttestationError):
    """A certificate, CRL or collateral document is not valid at the verification time."""


class ProviderError(AttestationError):
    """An attestation provider could not produce a quote (e.g. /dev/attestation unavailable)."""
