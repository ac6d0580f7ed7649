"""Which sequence numbers a member of a shared group received, and their union.

With competing consumers, a member sees only some of each stream (every fourth
message, or runs of a thousand): a skipped number is somebody else's, not a loss.
So each member keeps, per stream, the set of sequence numbers it received (a
bitmap from the first one it saw) and ships it compressed at the end; the
coordinator takes the union per group: ``lost = owed - |union|`` and
``duplicated = sum of members' deliveries - |union|`` (a task done twice, by
one member or two). A bitmap is compact whatever the interleaving: one bit a
message, and zlib folds the regular patterns round robin makes.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MAX_SPAN = 1 << 34
"""Widest range of sequence numbers one stream's bitmap may cover (2 GiB of bytes in
memory): a sequence number further from the first is refused rather than allocated."""
_GROW = 1 << 16


class SpanError(ValueError):
    """A sequence number lies too far from the stream's first to be tracked."""


class _Stream:
    __slots__ = ("base", "bits")

    def __init__(self, base: int) -> None:
        self.base = base
        self.bits = np.zeros(_GROW, np.bool_)

    def index(self, seq: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        lo = int(seq.min())
        if lo < self.base:
            self._rebase(lo)
        idx = seq - self.base
        top = int(idx.max()) + 1
        if top > MAX_SPAN:
            raise SpanError(f"sequence number {int(seq.max())} is more than {MAX_SPAN} past "
                            f"{self.base}")
        if top > len(self.bits):
            grown = np.zeros(max(top, 2 * len(self.bits)), np.bool_)
            grown[: len(self.bits)] = self.bits
            self.bits = grown
        return idx

    def _rebase(self, lo: int) -> None:
        shift = self.base - lo
        grown = np.zeros(len(self.bits) + shift, np.bool_)
        grown[shift:] = self.bits
        self.bits = grown
        self.base = lo


class ReceivedSet:
    """The sequence numbers one group member received, per stream key."""

    def __init__(self) -> None:
        self._streams: dict[int, _Stream] = {}
        self.received = 0
        """Messages added, duplicates included."""
        self.repeated = 0
        """Messages this member had already received itself."""

    def add(self, key: int, seq: npt.NDArray[np.int64]) -> int:
        """Record ``seq`` (any order, repeats allowed) on stream ``key``; return how many of
        them this member had not received before."""
        if not len(seq):
            return 0
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(int(seq.min()))
        idx = stream.index(seq)
        uniq = np.unique(idx) if len(idx) > 1 and not (np.diff(idx) > 0).all() else idx
        new = int(len(uniq) - np.count_nonzero(stream.bits[uniq]))
        stream.bits[uniq] = True
        self.received += len(seq)
        self.repeated += len(seq) - new
        return new

    def add_one(self, key: int, seq: int) -> bool:
        """Record one sequence number; True when it is new to this member."""
        return self.add(key, np.array([seq], np.int64)) == 1

    def encode(self) -> dict[str, dict[str, int | str]]:
        """JSON-ready: per stream key, its base and its bitmap packed and compressed."""
        out: dict[str, dict[str, int | str]] = {}
        for key, s in self._streams.items():
            used = np.flatnonzero(s.bits)
            top = int(used[-1]) + 1 if len(used) else 0
            packed = np.packbits(s.bits[:top]).tobytes()
            out[str(key)] = {"base": s.base, "n": top,
                             "bits": base64.b64encode(zlib.compress(packed, 6)).decode("ascii")}
        return out


@dataclass(frozen=True)
class Union:
    """What the members of one group received, together."""

    unique: int
    """Distinct messages received by any member."""
    per_stream: dict[int, int]
    """Distinct messages per stream key."""


def union(encoded: Iterable[Mapping[str, Mapping[str, int | str]]]) -> Union:
    """The union of members' :meth:`ReceivedSet.encode` outputs.

    Raises ValueError on a malformed encoding (bad base64 or zlib, a bitmap
    shorter than it says, a span past :data:`MAX_SPAN`).
    """
    spans: dict[int, list[tuple[int, npt.NDArray[np.bool_]]]] = {}
    for member in encoded:
        for key_text, enc in member.items():
            n = int(enc["n"])
            if not 0 <= n <= MAX_SPAN:
                raise ValueError(f"bitmap of {n} bits is out of range")
            raw = _inflate(str(enc["bits"]), (n + 7) // 8)
            bits = np.unpackbits(np.frombuffer(raw, np.uint8), count=n).astype(np.bool_)
            spans.setdefault(int(key_text), []).append((int(enc["base"]), bits))
    per_stream = {}
    for key, parts in spans.items():
        lo = min(b for b, _ in parts)
        hi = max(b + len(bits) for b, bits in parts)
        merged = np.zeros(hi - lo, np.bool_)
        for base, bits in parts:
            merged[base - lo : base - lo + len(bits)] |= bits
        per_stream[key] = int(np.count_nonzero(merged))
    return Union(sum(per_stream.values()), per_stream)


def _inflate(text: str, size: int) -> bytes:
    """Decompress at most ``size`` bytes (a zlib bomb stops there) and insist on all of them."""
    try:
        d = zlib.decompressobj()
        raw = d.decompress(base64.b64decode(text, validate=True), size)
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"bad bitmap encoding: {exc}") from None
    if len(raw) != size or d.unconsumed_tail:
        raise ValueError(f"bitmap holds {len(raw)} B, not the {size} B it claims")
    return raw
