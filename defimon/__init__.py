"""defimon: a self-hostable, real-time DeFi risk monitor."""

__version__ = "0.1.0"
