"""The client side of the escrow-node protocol (docs/protocol.md §2-§4): request signing
(auth), the signed messages both sides exchange (messages) and the HTTP client (client).

It lives in vault/ because the reporter's, outlet's and editor's code needs it and the core
library must not depend on the node service; escrow_node/ imports it from here.
"""
