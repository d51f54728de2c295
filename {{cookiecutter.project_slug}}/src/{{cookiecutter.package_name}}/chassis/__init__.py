"""Cross-cutting machinery of the service, one concern per module."""
