"""Wallets to start watching (`POST /v1/watch`), handed from the API's threads to each chain's
reader (flows/watch.py reads them). In the API-only process nothing takes them: no flow runs
there, so such a wallet stays pending."""

from __future__ import annotations

import threading


class WatchRequests:
    """Wallets to start watching, handed from the API's threads to each chain's reader."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: dict[int, list[str]] = {}
        self._started: dict[int, dict[str, int]] = {}

    def add(self, chain_id: int, wallet: str) -> None:
        with self._changed:
            queue = self._pending.setdefault(chain_id, [])
            if wallet not in queue and wallet not in self._started.get(chain_id, {}):
                queue.append(wallet)

    def pending(self, chain_id: int) -> bool:
        with self._changed:
            return bool(self._pending.get(chain_id))

    def take(self, chain_id: int) -> list[str]:
        with self._changed:
            return self._pending.pop(chain_id, [])

    def started(self, chain_id: int, wallets: dict[str, int]) -> None:
        """These wallets are shown from these blocks on (called by the reader)."""
        with self._changed:
            self._started.setdefault(chain_id, {}).update(wallets)
            self._changed.notify_all()

    def start_block(self, chain_id: int, wallet: str) -> int | None:
        with self._changed:
            return self._started.get(chain_id, {}).get(wallet)

    def wait(self, chain_id: int, wallet: str, timeout: float) -> int | None:
        """The block the wallet is shown from, waiting up to `timeout` s for its seed."""
        with self._changed:
            self._changed.wait_for(
                lambda: wallet in self._started.get(chain_id, {}), timeout=timeout
            )
            return self._started.get(chain_id, {}).get(wallet)

    def watched(self, chain_id: int) -> dict[str, int]:
        with self._changed:
            return dict(self._started.get(chain_id, {}))
