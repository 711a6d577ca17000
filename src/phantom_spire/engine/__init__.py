"""The engine: task lifecycle, retry policy and the worker pool."""
