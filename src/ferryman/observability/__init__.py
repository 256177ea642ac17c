"""Observability: Prometheus metrics, health checks, the HTTP endpoints, tracing and logs."""
