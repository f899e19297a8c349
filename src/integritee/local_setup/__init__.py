"""Local networks: launching nodes (and later validateers) for development and demos."""
