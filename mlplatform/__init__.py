"""mlplatform: tabular ML from landing files to a verified, pickle-free serving bundle."""

__version__ = "0.1.0"
