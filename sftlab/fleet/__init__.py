"""A whole fleet: its spec and knobs, PKI and file trees, addresses, start and stop, the client's files."""
