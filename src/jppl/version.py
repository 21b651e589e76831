"""The version of jppl (read by the packaging metadata and by exported files)."""

__version__ = "0.1.0.dev0"
