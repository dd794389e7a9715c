"""HTTP handlers. Each module exposes ``ROUTES``: (path under /api/v1, handler class) pairs."""
