"""cms layer."""
