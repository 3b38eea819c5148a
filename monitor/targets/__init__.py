"""Targets with deadlines: rule files, their evaluation, forecasts and scores."""
