"""A block pickled between Bytewax processes comes back equal, its logs RawLogs, whatever
they hold: the packed columns where every value fits them, plain tuples where one does not."""

from __future__ import annotations

import copy
import copyreg
import io
import pickle
from dataclasses import fields
from typing import Any

from schemas.chain import BlockBatch, BlockHeader, PackedLogs, RawLog, TokenInfo, pack_logs

HEADER = BlockHeader(31337, 120, "0x" + "ab" * 32, "0x" + "cd" * 32, 1_700_000_000)


def _log(
    index: int, topics: tuple[str, ...], data: str = "0x", tx_hash: str | None = None
) -> RawLog:
    return RawLog(
        31337,
        120,
        HEADER.hash,
        index,
        f"0x{index:064x}" if tx_hash is None else tx_hash,
        index // 3,
        f"0x{index % 7:040x}",
        topics,
        data,
    )


def _topic(n: int) -> str:
    return f"0x{n:064x}"


def _batch(logs: list[RawLog]) -> BlockBatch:
    return BlockBatch(
        HEADER,
        logs,
        head=130,
        live=False,
        tokens={"0x01": TokenInfo("0x01", "TKN", 6)},
        checkpoint=False,
        balances={("0xwallet", "0x01"): 10**30},
        final_block=66,
    )


def _round_trip(batch: BlockBatch) -> BlockBatch:
    back = pickle.loads(pickle.dumps(batch, protocol=5))
    assert isinstance(back, BlockBatch)
    return back


def test_logs_of_every_shape_come_back_equal_as_raw_logs() -> None:
    logs = [
        # 0 to 4 topics, an empty tx hash (a state read's dead letter), empty data
        _log(i, tuple(_topic(i * 10 + t) for t in range(i % 5)), data="0x" + "00" * (i % 3))
        for i in range(40)
    ] + [_log(40, (), tx_hash=""), _log(41, (_topic(1),), data="")]
    batch = _batch(logs)
    assert isinstance(pack_logs(batch.logs), PackedLogs)
    back = _round_trip(batch)
    assert back == batch
    assert all(type(log) is RawLog for log in back.logs)
    assert back.logs[3].topics == (_topic(30), _topic(31), _topic(32))
    assert back.final_block == 66 and back.balances == {("0xwallet", "0x01"): 10**30}


def test_one_log_without_topics_and_no_logs_at_all() -> None:
    for logs in ([_log(0, ())], [_log(0, ("",), data="")], []):
        back = _round_trip(_batch(logs))
        assert back.logs == logs
        assert all(type(log) is RawLog for log in back.logs)


def test_values_that_do_not_fit_the_columns_fall_back_to_tuples() -> None:
    huge = _log(1, (_topic(1),))._replace(log_index=2**70)  # beyond int64
    newline = _log(2, ("0xab\ncd",))  # the separator inside a string
    for odd in (huge, newline):
        logs = [_log(0, (_topic(0),)), odd]
        assert not isinstance(pack_logs(logs), PackedLogs)
        back = _round_trip(_batch(logs))
        assert back.logs == logs
        assert all(type(log) is RawLog for log in back.logs)


def test_a_deep_copy_is_equal_and_independent() -> None:
    batch = _batch([_log(i, (_topic(i),)) for i in range(5)])
    copied = copy.deepcopy(batch)
    assert copied == batch
    copied.logs.pop()
    assert len(batch.logs) == 5


class _BeforePacking(pickle.Pickler):
    """Pickles a BlockBatch as Python did before it packed its logs (protocol 2 and up, slots
    and no __getstate__: `copyreg.__newobj__` and the slots' values by name)."""

    def reducer_override(self, obj: object) -> Any:
        if type(obj) is not BlockBatch:
            return NotImplemented
        slots = {f.name: getattr(obj, f.name) for f in fields(BlockBatch)}
        return copyreg.__newobj__, (BlockBatch,), (None, slots)  # type: ignore[attr-defined]


def test_a_block_pickled_before_the_packing_still_loads() -> None:
    """The market's undo history (in a recovery directory) holds its unfinalised blocks."""
    batch = _batch([_log(i, (_topic(i),)) for i in range(3)])
    saved = io.BytesIO()
    _BeforePacking(saved, protocol=5).dump(batch)
    back = pickle.loads(saved.getvalue())
    assert isinstance(back, BlockBatch)
    assert back == batch
    assert all(type(log) is RawLog for log in back.logs)
