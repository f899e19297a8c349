"""Local networks: `integritee-local-setup` starts nodes, validateers and Prometheus from a JSON
config (`configs/*.json`), runs the narrated demo of `make run`, and stops everything cleanly."""
