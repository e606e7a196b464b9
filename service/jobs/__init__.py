"""Conversion jobs: SQLite persistence, the runner that feeds them through the pipeline, TTL cleanup."""
