"""Fault injection: the service keeps working, loses nothing and lets no one in (issue 8)."""
