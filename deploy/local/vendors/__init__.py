"""Local imitations of the chat vendors' endpoints, for the demo and the tests (one module per vendor).

Each checks what the vendor checks — its signature, its body shape, its size limits and its rate limit — with
code of its own (never ticketloop's signer), and answers as the vendor documents, error codes included. They
all run in one HTTP server (``base.VendorSink``) on 127.0.0.1, each vendor under its own path prefix.
"""
