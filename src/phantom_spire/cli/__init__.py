"""The ``spire`` command line."""
