"""Cluster providers (local, kind, existing), local images and kube helpers."""
