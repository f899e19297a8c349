"""The node's peer-to-peer network: wire format (`wire`), peers (`peer`), the service (`service`)."""
