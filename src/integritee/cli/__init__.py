"""integritee-cli: the command-line client of the parentchain node and the validateers.

Layout: `main` (the click group and global options), `context` (shared settings, errors and
parameter types), `keystore` (Substrate file keystore), `accounts` (account argument resolution),
`chain_client` (parentchain access through substrate-interface), `base_commands` (parentchain
commands). The CLI talks to node and workers only over the network.
"""

from __future__ import annotations
