"""The untrusted validateer host: launches the enclave, talks to the parentchain, serves untrusted endpoints."""
