"""Rosetta: a self-hosted team chat server where every member reads every message in their own language."""

__version__ = "0.1.0"
