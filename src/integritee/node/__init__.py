"""integritee-node: the parentchain (chain, runtime, consensus, pool, RPC, metrics)."""
