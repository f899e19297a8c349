"""`python -m integritee.local_setup`: the same as `integritee-local-setup`."""

from __future__ import annotations

from .launcher import main

main()
