"""What the flow and the API plug into, apart from the composition root (`defimon`): the
store, the event bus, metrics, settings, the flow's status, API keys, analyst SQL and the
watch requests. It imports only `schemas` (and third-party libraries), never `flows`, `api`
or `defimon`, so both sides can use it without importing each other."""

__version__ = "0.1.0"
