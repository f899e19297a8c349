"""The runtime's pallets, one module each (declarations plus their call handlers)."""
