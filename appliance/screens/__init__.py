"""The gate's screens."""
