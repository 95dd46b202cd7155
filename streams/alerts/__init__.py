"""Alerts out of the pipeline: delivering firing and resolved alerts to webhook receivers."""
