"""Wire types of the trusted side, shared by the enclave and its clients.

`calls`: TrustedCall, TrustedCallSigned, TrustedOperation, Getter and their signing payloads;
`rpc`: the direct-invocation RPC's Request, RpcReturnValue and operation statuses. The enclave
executes them; the CLI and other clients build and read them.
"""
