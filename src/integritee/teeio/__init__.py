"""The enclave boundary: the typed ecall/ocall interface between the service and the enclave.

Ecalls (service -> enclave) and ocalls (enclave -> service) are JSON-RPC calls over Unix sockets
(owner-only permissions). Their parameters and results are the dataclasses of `messages`, converted
field by field (bytes as 0x-hex), so both sides agree on one declaration and nothing but public
data and ciphertexts crosses the boundary.
"""
