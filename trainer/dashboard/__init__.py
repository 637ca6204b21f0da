"""Dashboards that read the status files: a local web page and a terminal view."""
