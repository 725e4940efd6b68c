"""Render, schema-check and policy-check kustomizations."""
