"""ERC-20 balances of the wallets defimon tracks (pure: decoding and the balance fold)."""
