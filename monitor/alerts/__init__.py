"""Alerts: state per (rule, unit), routing, digests, silences, the outbox and delivery."""
