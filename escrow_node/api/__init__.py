"""HTTP routers, one per resource (docs/protocol.md §4)."""
