"""inhouse: your private AI, in house."""

__version__ = "0.1.0"
