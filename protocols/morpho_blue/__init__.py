"""Morpho Blue 1.0.0: its events (`events`), integer math (`math`) and pure state (`state`)."""
