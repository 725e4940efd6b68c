"""Moving state between saves/ files and the database (migrate-config, export-config, diff)."""
