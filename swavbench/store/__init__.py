"""Stored results: the run history (SQLite) that the report is built from."""
