"""The reference API server: a light stand-in for Yuxi-Know that honours its deployment contract."""
