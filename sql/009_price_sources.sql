-- Oracle prices that could not be read (issue 10): `stale` says why ('' when the answer is
-- current); `answer` is then the last good one. Upgrades stores created before this file.
ALTER TABLE defimon.oracle_prices ADD COLUMN IF NOT EXISTS stale String DEFAULT '';
