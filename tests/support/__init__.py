"""Helpers for the tests: real PostgreSQL, Prometheus and promtool (see components.py)."""
