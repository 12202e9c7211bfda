"""The position shards, keyed by `chain:shard`: every protocol's shard part applies its part
of the block's work (positions, accounts) and values what changed, once per checkpoint block;
at a window boundary, every part observes its subjects first and the shard's window book closes
the windows that ended. Pure: `shard_step(state, input) -> (state, output)`."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.registry import PLUGINS
from protocols.spec import ShardInput, ShardOutput, ShardPart
from protocols.windows import WindowBook

_SHARD_PLUGINS = tuple(p for p in PLUGINS if p.shard is not None)


@dataclass(slots=True)
class ShardState:
    # protocol -> its part of this shard (made when the market first sends it work)
    parts: dict[str, ShardPart] = field(default_factory=dict)
    windows: WindowBook = field(default_factory=WindowBook)

    def part(self, name: str) -> ShardPart | None:
        return self.parts.get(name)


def shard_step(state: ShardState | None, item: ShardInput) -> tuple[ShardState, ShardOutput]:
    state = state or ShardState()
    out = ShardOutput(item.block, item.live, item.shard)
    parts: list[tuple[str, ShardPart]] = []  # in registry order
    for plugin in _SHARD_PLUGINS:
        part = state.parts.get(plugin.name)
        if part is None and plugin.name in item.parts and plugin.shard is not None:
            part = state.parts[plugin.name] = plugin.shard()
        if part is not None:
            parts.append((plugin.name, part))
    if item.boundary is not None:
        # Before this block changes anything: the boundary observes the previous block's state.
        observed: set[str] = set()
        for name, part in parts:
            observed |= part.observe(item.parts.get(name), state.windows, item.boundary)
        out.windows = state.windows.close(item.boundary, observed)
        for _name, part in parts:
            part.after_windows()
    for name, part in parts:
        result = part.step(item.parts.get(name), item.block, item.checkpoint)
        if result is not None:
            out.parts[name] = result
    return state, out
