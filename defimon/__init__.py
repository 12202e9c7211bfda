"""defimon: a self-hostable, real-time DeFi risk monitor.

This package is the composition root (the command line and the one-process runtime); what
the flow and the API share lives in `ports`."""

from ports import __version__

__all__ = ["__version__"]
