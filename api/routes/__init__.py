"""Routes of the service: one module per resource under /api/v1, plus health checks and the web pages."""
