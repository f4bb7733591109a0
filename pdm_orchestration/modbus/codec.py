"""Turning Modbus registers into engineering values and back, a whole block at a time.

Byte orders name the bytes of a value as they arrive, by 123.456 as float32 (0x42F6E979):
ABCD = 0x42F6 0xE979 (big-endian words, high word first), CDAB = 0xE979 0x42F6 (word swap),
BADC = 0xF642 0x79E9 (byte swap in each word), DCBA = 0x79E9 0xF642 (both). The same rule holds
for 64-bit values (word order reversed / bytes swapped). Strings take the byte swap only.

Decoding is vectorised with numpy: points of one block that share a data type and byte order are
decoded with one gather and one `frombuffer`, never one call per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pdm_orchestration.plant.config import BIT_KINDS, Point

NUMPY_TYPE = {
    "int16": ">i2",
    "uint16": ">u2",
    "int32": ">i4",
    "uint32": ">u4",
    "float32": ">f4",
    "int64": ">i8",
    "uint64": ">u8",
    "float64": ">f8",
}
WORD_SWAP = {"ABCD": False, "CDAB": True, "BADC": False, "DCBA": True}
BYTE_SWAP = {"ABCD": False, "CDAB": False, "BADC": True, "DCBA": True}

GOOD = "good"
BAD_DECODE = "bad_decode"
BAD_TIMEOUT = "bad_timeout"
BAD_CLOCK = "bad_clock"


def bad_exception(code: int) -> str:
    """Quality of a value whose read was answered with Modbus exception `code`."""
    return f"bad_exception_{code}"


def words_to_raw(words: np.ndarray, data_type: str, byte_order: str) -> np.ndarray:
    """Raw numbers from an (n, width) array of 16-bit words, one row per value."""
    words = np.asarray(words, dtype=np.uint16)
    if WORD_SWAP[byte_order]:
        words = words[:, ::-1]
    if BYTE_SWAP[byte_order]:
        words = words.byteswap()
    data = np.ascontiguousarray(words).astype(">u2").tobytes()
    return np.frombuffer(data, dtype=NUMPY_TYPE[data_type])


def raw_to_words(raw: np.ndarray | Sequence[float], data_type: str, byte_order: str) -> np.ndarray:
    """The (n, width) words that encode `raw` numbers (the inverse of `words_to_raw`)."""
    values = np.asarray(raw).astype(NUMPY_TYPE[data_type])
    width = values.dtype.itemsize // 2
    words = np.frombuffer(values.tobytes(), dtype=">u2").reshape(-1, width).astype(np.uint16)
    if BYTE_SWAP[byte_order]:
        words = words.byteswap()
    if WORD_SWAP[byte_order]:
        words = words[:, ::-1]
    return np.ascontiguousarray(words)


def words_to_text(words: Sequence[int], byte_order: str) -> str:
    """A string from registers, two characters each; trailing NULs and blanks dropped."""
    array = np.asarray(words, dtype=np.uint16)
    if BYTE_SWAP[byte_order]:
        array = array.byteswap()
    return array.astype(">u2").tobytes().decode("latin-1").rstrip("\x00 ")


def text_to_words(text: str, length: int, byte_order: str) -> list[int]:
    """`length` registers holding `text` (padded with NULs, cut to fit)."""
    data = text.encode("latin-1", errors="replace")[: 2 * length].ljust(2 * length, b"\x00")
    array = np.frombuffer(data, dtype=">u2").astype(np.uint16)
    if BYTE_SWAP[byte_order]:
        array = array.byteswap()
    return [int(w) for w in array]


def engineering_to_raw(point: Point, value: float) -> float:
    """The raw number that decodes to `value` (value = raw * scale + offset), rounded for ints."""
    raw = (value - point.offset) / point.scale
    if point.data_type.startswith(("int", "uint")):
        info = np.iinfo(NUMPY_TYPE[point.data_type])
        return float(min(max(round(raw), info.min), info.max))
    return raw


@dataclass(frozen=True)
class Decoded:
    """The values of one block: aligned with the block's points."""

    values: np.ndarray  # float64, NaN where no value
    quality: list[str]
    texts: list[str | None]  # the text of string points, else None


class BlockDecoder:
    """Decodes the registers (or bits) of one read into each point's engineering value.

    Built once per block; `decode` is then a handful of numpy operations whatever the number of
    points.
    """

    def __init__(self, points: Sequence[Point], start: int) -> None:
        self.points = list(points)
        self.start = start
        n = len(self.points)
        self.scale = np.array([p.scale for p in self.points], dtype=np.float64)
        self.offset = np.array([p.offset for p in self.points], dtype=np.float64)
        self.low = np.array(
            [p.physical_min if p.physical_min is not None else -np.inf for p in self.points]
        )
        self.high = np.array(
            [p.physical_max if p.physical_max is not None else np.inf for p in self.points]
        )
        self.sentinel = np.array(
            [p.nan_value if p.nan_value is not None else np.nan for p in self.points]
        )
        self.bit_kind = bool(self.points) and self.points[0].register_kind in BIT_KINDS
        # Groups of point indexes that decode the same way.
        self.numeric: list[tuple[np.ndarray, np.ndarray, str, str]] = []
        self.bits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.strings: list[int] = []
        groups: dict[tuple[str, str], list[int]] = {}
        bit_rows: list[int] = []
        for index, point in enumerate(self.points):
            if self.bit_kind or point.data_type == "bit":
                bit_rows.append(index)
            elif point.data_type == "string":
                self.strings.append(index)
            else:
                groups.setdefault((point.data_type, point.byte_order), []).append(index)
        for (data_type, byte_order), rows in groups.items():
            width = self.points[rows[0]].length
            offsets = np.array([self.points[i].address - start for i in rows])
            gather = offsets[:, None] + np.arange(width)[None, :]
            self.numeric.append((np.array(rows), gather, data_type, byte_order))
        if bit_rows:
            rows = np.array(bit_rows)
            offsets = np.array([self.points[i].address - start for i in bit_rows])
            shifts = np.array([self.points[i].bit or 0 for i in bit_rows])
            self.bits = (rows, offsets, shifts)
        self._n = n

    def decode(self, registers: Sequence[int] | Sequence[bool]) -> Decoded:
        """Values and qualities of every point from the block's registers (or bits)."""
        raw = np.full(self._n, np.nan)
        words = np.asarray(registers, dtype=np.uint16)
        for rows, gather, data_type, byte_order in self.numeric:
            raw[rows] = words_to_raw(words[gather], data_type, byte_order)
        if self.bits is not None:
            rows, offsets, shifts = self.bits
            if self.bit_kind:
                raw[rows] = words[offsets] & 1
            else:
                raw[rows] = (words[offsets] >> shifts) & 1
        texts: list[str | None] = [None] * self._n
        for index in self.strings:
            point = self.points[index]
            offset = point.address - self.start
            texts[index] = words_to_text(words[offset : offset + point.length], point.byte_order)
            raw[index] = np.nan
        return self._finish(raw, texts)

    def _finish(self, raw: np.ndarray, texts: list[str | None]) -> Decoded:
        with np.errstate(invalid="ignore", over="ignore"):
            sentinel_hit = raw == self.sentinel
            values = raw * self.scale + self.offset
        not_finite = ~np.isfinite(values)
        out_of_range = (values < self.low) | (values > self.high)
        bad = sentinel_hit | not_finite | out_of_range
        values[sentinel_hit | not_finite] = np.nan
        quality = [BAD_DECODE if b else GOOD for b in bad.tolist()]
        for index, text in enumerate(texts):
            if text is not None:
                quality[index] = GOOD
        return Decoded(values=values, quality=quality, texts=texts)


def encode_point(point: Point, value: float | str) -> list[int]:
    """Registers (or 0/1 bits) that hold `value` for `point`, as a device would serve them."""
    if point.data_type == "string":
        return text_to_words(str(value), point.length, point.byte_order)
    if point.register_kind in BIT_KINDS or point.data_type == "bit":
        return [1 if value else 0]
    raw = value if np.isnan(value) else engineering_to_raw(point, float(value))
    return [int(w) for w in raw_to_words([raw], point.data_type, point.byte_order)[0]]
