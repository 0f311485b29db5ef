"""An example otzoo solver plugin (see README.md)."""
