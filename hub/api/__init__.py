"""The HTTP API (FastAPI): ingest routes, coordinator read routes, probes and metrics."""
