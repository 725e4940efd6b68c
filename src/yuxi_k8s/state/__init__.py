"""Distributed state: configuration and knowledge-base metadata in PostgreSQL or files."""
