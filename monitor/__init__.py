"""egov-kpi-monitor: e-government KPIs per organisational unit, against official targets."""

__version__ = "0.1.0"
