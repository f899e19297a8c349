"""The parentchain's wire types, shared by the node, the enclave's light client and the clients.

Primitives (headers, digests, accounts, addresses, signatures, eras, dispatch results), the
extrinsic v4 format and its signing payload, the TEE pallets' types, and GRANDPA finality proofs.
Pallet logic stays in the node; what crosses the wire is declared here, once.
"""
