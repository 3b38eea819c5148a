"""Grafana dashboards generated from code (plain dicts, no extra dependency)."""

from monitor.dashboards.builder import FOLDERS, build_dashboards, provisioning_files, write_dashboards

__all__ = ["FOLDERS", "build_dashboards", "provisioning_files", "write_dashboards"]
