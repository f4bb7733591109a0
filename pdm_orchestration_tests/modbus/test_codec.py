import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient

from pdm_orchestration.modbus import codec
from pdm_orchestration.modbus.codec import (
    BlockDecoder,
    encode_point,
    raw_to_words,
    text_to_words,
    words_to_raw,
    words_to_text,
)
from pdm_orchestration.plant.config import Point

ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]


def make_point(**overrides: object) -> Point:
    fields = dict(
        device="d",
        sensor="p",
        connection="c",
        unit_id=1,
        role="value",
        register_kind="holding",
        address=0,
        data_type="float32",
        bit=None,
        length=2,
        byte_order="ABCD",
        scale=1.0,
        offset=0.0,
        unit=None,
        physical_min=None,
        physical_max=None,
        nan_value=None,
        warn_low=None,
        warn_high=None,
        alarm_low=None,
        alarm_high=None,
        poll_group="default",
        description=None,
    )
    fields.update(overrides)
    return Point(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "words"),
    [
        ("ABCD", [0x42F6, 0xE979]),
        ("CDAB", [0xE979, 0x42F6]),
        ("BADC", [0xF642, 0x79E9]),
        ("DCBA", [0x79E9, 0xF642]),
    ],
)
def test_worked_example_of_the_four_byte_orders(order: str, words: list[int]) -> None:
    assert raw_to_words([123.456], "float32", order).tolist() == [words]
    assert words_to_raw(np.array([words]), "float32", order)[0] == pytest.approx(123.456, rel=1e-7)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    "data_type", ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
)
def test_every_type_and_order_round_trips(data_type: str, order: str) -> None:
    rng = np.random.default_rng(7)
    dtype = np.dtype(codec.NUMPY_TYPE[data_type]).newbyteorder("=")
    if dtype.kind == "f":
        raw = rng.normal(0, 1e4, 50).astype(dtype)
    else:
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, info.max, 50, dtype=dtype, endpoint=True)
    words = raw_to_words(raw, data_type, order)
    assert words.shape == (50, dtype.itemsize // 2)
    assert np.array_equal(words_to_raw(words, data_type, order), raw)


@pytest.mark.parametrize("order", ["ABCD", "CDAB"])
def test_word_orders_agree_with_pymodbus(order: str) -> None:
    """pymodbus's own helper (word order only) reads our encoding the same way."""
    words = raw_to_words([123.456, -0.5], "float32", order)
    word_order = "big" if order == "ABCD" else "little"
    for row, expected in zip(words, [123.456, -0.5], strict=True):
        value = ModbusTcpClient.convert_from_registers(
            [int(w) for w in row], ModbusTcpClient.DATATYPE.FLOAT32, word_order=word_order
        )
        assert value == pytest.approx(expected, rel=1e-6)


def test_strings_take_the_byte_swap_and_drop_padding() -> None:
    assert text_to_words("AB", 2, "ABCD") == [0x4142, 0]
    assert text_to_words("AB", 2, "BADC") == [0x4241, 0]
    assert words_to_text(text_to_words("SC-40X", 4, "DCBA"), "DCBA") == "SC-40X"
    assert words_to_text(text_to_words("longer than room", 2, "ABCD"), "ABCD") == "long"


def test_block_decoder_decodes_a_mixed_block_with_quality() -> None:
    points = [
        make_point(sensor="temp", address=10, physical_min=-40, physical_max=200),
        make_point(sensor="pressure", address=12, data_type="int16", length=1, scale=0.01),
        make_point(
            sensor="flow", address=13, data_type="uint16", length=1, scale=0.1, nan_value=65535
        ),
        make_point(sensor="leak", address=14, data_type="bit", length=1, bit=3),
        make_point(sensor="trip", address=14, data_type="bit", length=1, bit=4),
        make_point(sensor="energy", address=15, data_type="float64", length=4, byte_order="CDAB"),
        make_point(sensor="model", address=19, data_type="string", length=2),
        make_point(sensor="hot", address=21, physical_max=100.0),
        make_point(sensor="broken", address=23),
    ]
    registers = [0] * 15
    registers[0:2] = raw_to_words([55.5], "float32", "ABCD")[0]
    registers[2] = int(raw_to_words([-250], "int16", "ABCD")[0][0])
    registers[3] = 65535  # the sentinel: no value
    registers[4] = 0b1_0000  # bit 4 set, bit 3 clear
    registers[5:9] = raw_to_words([1234.5], "float64", "CDAB")[0]
    registers[9:11] = text_to_words("P7", 2, "ABCD")
    registers[11:13] = raw_to_words([150.0], "float32", "ABCD")[0]  # above its range
    registers[13:15] = raw_to_words([np.nan], "float32", "ABCD")[0]
    decoded = BlockDecoder(points, start=10).decode(registers)
    by_name = {
        p.sensor: (v, q, t)
        for p, v, q, t in zip(points, decoded.values, decoded.quality, decoded.texts, strict=True)
    }
    assert by_name["temp"][:2] == (pytest.approx(55.5), "good")
    assert by_name["pressure"][:2] == (pytest.approx(-2.5), "good")
    assert np.isnan(by_name["flow"][0]) and by_name["flow"][1] == "bad_decode"
    assert by_name["leak"][:2] == (0.0, "good")
    assert by_name["trip"][:2] == (1.0, "good")
    assert by_name["energy"][:2] == (pytest.approx(1234.5), "good")
    assert by_name["model"][1:] == ("good", "P7")
    assert by_name["hot"][:2] == (pytest.approx(150.0), "bad_decode")  # value kept, flagged
    assert np.isnan(by_name["broken"][0]) and by_name["broken"][1] == "bad_decode"


def test_decoding_is_one_vectorised_call_per_type_and_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = [make_point(sensor=f"s{i}", address=2 * i) for i in range(60)]
    points += [make_point(sensor=f"c{i}", address=120 + 2 * i, byte_order="CDAB") for i in range(2)]
    calls = []
    real = codec.words_to_raw

    def counting(words: np.ndarray, data_type: str, byte_order: str) -> np.ndarray:
        calls.append(len(words))
        return real(words, data_type, byte_order)

    monkeypatch.setattr(codec, "words_to_raw", counting)
    values = np.arange(62, dtype=np.float32)
    registers = np.concatenate(
        [
            raw_to_words(values[:60], "float32", "ABCD").ravel(),
            raw_to_words(values[60:], "float32", "CDAB").ravel(),
        ]
    )
    decoded = BlockDecoder(points, start=0).decode(registers.tolist())
    assert sorted(calls) == [2, 60]
    assert decoded.values.tolist() == values.tolist()


def test_encode_point_is_the_inverse_of_decoding() -> None:
    for order in ORDERS:
        p = make_point(data_type="int32", length=2, byte_order=order, scale=0.001, offset=-5)
        words = encode_point(p, 12.345)
        assert BlockDecoder([p], 0).decode(words).values[0] == pytest.approx(12.345)
    bit = make_point(register_kind="coil", data_type="bit", length=1)
    assert encode_point(bit, 1.0) == [1]
