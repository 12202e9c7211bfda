"""Dicts that remember what each key held before a run of blocks changed it: undo by deltas.

flows/rewind.py keeps each stage's state undoable for the blocks that are not final yet.
Pickling the whole state for that costs time in the state's size (seconds at mainnet size, on
the live path). So the large per-subject maps of the stages' states (positions, accounts, pools,
balances, window books) are journaled dicts: while a `Journal` is active (flows/rewind.py
activates one around every step of an unfinalised block), the first change of a key records
what the key held before (or that it was absent). Undo then costs what the blocks changed;
the rest of a state (small: prices, tokens, dirty sets) is pickled whole, with each journaled
dict in it pickled as a reference (`pickle_skeleton`).

Two kinds, by how their values change:

- `JournaledDict`: values are replaced, never changed in place (ints, strings, tuples, frozen
  dataclasses, journaled dicts): a write records the value it replaces, by reference.
- `JournaledObjects`: values may be changed in place (a pool's replica, a set of ids): the
  first access to a key in a journal's run, read or write, records a copy of its value (sets
  copied, journaled dicts by reference as they journal themselves, other values pickled).

Outside an active journal (backfill of final blocks) both are plain dicts plus one check per
write (per access for `JournaledObjects`). Both pickle as themselves (a recovery snapshot).
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Iterable, Mapping
from dataclasses import is_dataclass
from fractions import Fraction
from typing import Any, TypeVar, cast

K = TypeVar("K")
V = TypeVar("V")

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class _Absent:
    """What a key held before it existed (undo deletes it). Pickles as the one instance."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "ABSENT"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


class _Copy:
    """A value pickled when first touched (undo unpickles it)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Active(threading.local):
    # Bytewax workers run stages on several threads of one process: one journal per thread.
    journal: Journal | None = None


_ACTIVE = _Active()

# How a value of a JournaledObjects is kept before its first change, by type: 0 by reference
# (immutable), 1 as a set copy, 2 pickled.
_KEEP: dict[type, int] = dict.fromkeys(
    (int, str, bytes, bool, float, type(None), frozenset, tuple, Fraction), 0
)
_KEEP[set] = 1


def _keep_kind(kind: type) -> int:
    found = _KEEP.get(kind)
    if found is None:
        immutable = issubclass(kind, tuple | JournaledDict) or (
            is_dataclass(kind) and kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
        )
        found = _KEEP[kind] = 0 if immutable else 2
    return found


def _kept(value: Any) -> Any:
    keep = _keep_kind(type(value))
    if keep == 0:
        return value
    if keep == 1:
        return set(value)
    return _Copy(pickle.dumps(value, _PROTOCOL))


class Journal:
    """What one run of blocks changed in journaled dicts: for each, every changed key's value
    from before the run's first change of it (ABSENT: the key did not exist)."""

    __slots__ = ("_before",)

    def __init__(self, before: Iterable[tuple[dict[Any, Any], dict[Any, Any]]] = ()) -> None:
        # id(dict) -> (the dict, key -> value before); keyed by id: dicts are not hashable
        self._before: dict[int, tuple[dict[Any, Any], dict[Any, Any]]] = {
            id(d): (d, kept) for d, kept in before
        }

    def __reduce__(self) -> tuple[type[Journal], tuple[list[tuple[dict[Any, Any], Any]]]]:
        return Journal, (list(self._before.values()),)

    def __len__(self) -> int:
        """Keys recorded (over every dict)."""
        return sum(len(kept) for _d, kept in self._before.values())

    def _log(self, d: dict[Any, Any]) -> dict[Any, Any]:
        entry = self._before.get(id(d))
        if entry is None:
            entry = self._before[id(d)] = (d, {})
        return entry[1]

    def undo(self) -> None:
        """Put every recorded key back as it was before the run; the journal is then empty
        (what it held is now in the dicts)."""
        for d, kept in self._before.values():
            for key, value in kept.items():
                if value is ABSENT:
                    dict.pop(d, key, None)
                elif type(value) is _Copy:
                    dict.__setitem__(d, key, pickle.loads(value.data))
                else:
                    dict.__setitem__(d, key, value)
        self._before.clear()

    def activate(self) -> _Activation:
        """`with journal.activate():` records what the journaled dicts change meanwhile."""
        return _Activation(self)


class _Activation:
    __slots__ = ("journal", "outer")

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.outer: Journal | None = None

    def __enter__(self) -> Journal:
        self.outer, _ACTIVE.journal = _ACTIVE.journal, self.journal
        return self.journal

    def __exit__(self, *_exc: object) -> None:
        _ACTIVE.journal = self.outer


class JournaledDict(dict[K, V]):
    """A dict whose values are replaced, never changed in place: while a journal is active, a
    write records the value it replaces."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type[JournaledDict[K, V]], tuple[dict[K, V]]]:
        # Unpickled from a plain dict in one C call; item by item (as for any dict subclass)
        # every item would go through __setitem__, 8x slower for a recovery snapshot.
        return type(self), (dict(self),)

    def _record(self, key: Any) -> None:
        journal = _ACTIVE.journal
        if journal is not None:
            kept = journal._log(self)
            if key not in kept:
                kept[key] = self._before(key)

    def _before(self, key: Any) -> Any:
        return dict.get(self, key, ABSENT)

    def __setitem__(self, key: K, value: V) -> None:
        journal = _ACTIVE.journal
        if journal is not None:
            # _record, inlined: a window boundary replaces every subject of a book
            entry = journal._before.get(id(self))
            kept = entry[1] if entry is not None else journal._log(self)
            if key not in kept:
                kept[key] = self._before(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: K) -> None:
        if _ACTIVE.journal is not None:
            self._record(key)
        dict.__delitem__(self, key)

    def pop(self, key: K, *default: Any) -> Any:
        if _ACTIVE.journal is not None and key in self:
            self._record(key)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[K, V]:
        if _ACTIVE.journal is not None and self:
            self._record(next(reversed(self.keys())))
        return dict.popitem(self)

    def setdefault(self, key: K, default: Any = None) -> V:
        if _ACTIVE.journal is not None:
            self._record(key)
        return cast(V, dict.setdefault(self, key, default))

    def update(self, other: Any = (), /, **kwargs: V) -> None:
        if _ACTIVE.journal is None:
            dict.update(self, other, **kwargs)
            return
        items = other.items() if isinstance(other, Mapping) else other
        for key, value in items:
            self[key] = value
        for key, value in kwargs.items():
            self[cast(K, key)] = value

    def __ior__(self, other: Any) -> JournaledDict[K, V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        if _ACTIVE.journal is not None:
            for key in list(self):
                self._record(key)
        dict.clear(self)


class JournaledObjects(JournaledDict[K, V]):
    """A dict whose values may be changed in place: while a journal is active, the first
    access to a key (read or write) records a copy of its value."""

    __slots__ = ()

    def _before(self, key: Any) -> Any:
        value = dict.get(self, key, ABSENT)
        return value if value is ABSENT else _kept(value)

    def __getitem__(self, key: K) -> V:
        if _ACTIVE.journal is not None:
            self._record(key)
        return dict.__getitem__(self, key)

    def get(self, key: K, default: Any = None) -> Any:
        if _ACTIVE.journal is not None and key in self:
            self._record(key)
        return dict.get(self, key, default)

    def values(self) -> Any:
        if _ACTIVE.journal is not None:
            for key in self:
                self._record(key)
        return dict.values(self)

    def items(self) -> Any:
        if _ACTIVE.journal is not None:
            for key in self:
                self._record(key)
        return dict.items(self)


class _SkeletonPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, _PROTOCOL)
        self.refs: list[JournaledDict[Any, Any]] = []
        self._seen: dict[int, int] = {}

    def persistent_id(self, obj: Any) -> int | None:
        if not isinstance(obj, JournaledDict):
            return None
        found = self._seen.get(id(obj))
        if found is None:
            found = self._seen[id(obj)] = len(self.refs)
            self.refs.append(obj)
        return found


class _SkeletonUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, refs: list[JournaledDict[Any, Any]]) -> None:
        super().__init__(file)
        self.refs = refs

    def persistent_load(self, pid: Any) -> JournaledDict[Any, Any]:
        return self.refs[pid]


def pickle_skeleton(state: object) -> tuple[bytes, list[JournaledDict[Any, Any]]]:
    """The state pickled without the contents of its journaled dicts: each is a reference to
    the live dict (the second value), whose own undo its journals keep."""
    out = io.BytesIO()
    pickler = _SkeletonPickler(out)
    pickler.dump(state)
    return out.getvalue(), pickler.refs


def load_skeleton(data: bytes, refs: list[JournaledDict[Any, Any]]) -> Any:
    """The state of `pickle_skeleton`, its journaled dicts the live ones (as undone)."""
    return _SkeletonUnpickler(io.BytesIO(data), refs).load()
