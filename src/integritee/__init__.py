"""Integritee in Python: parentchain node, TEE validateers, confidential sidechain, CLI."""
