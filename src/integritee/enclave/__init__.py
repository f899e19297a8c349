"""The trusted part of a validateer: keys, light client, STF, sidechain, direct RPC; never imports service or node."""
