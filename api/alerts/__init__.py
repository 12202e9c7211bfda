"""Alerts: rules over the filter grammar, the live engine, delivery and backtests."""
