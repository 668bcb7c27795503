"""The .mlae byte layout: bit packing, round trips, and every way a file can be unusable."""

import io
import struct
import zlib

import numpy as np
import pytest

from ml_audio_encoder.errors import CodecFileError
from ml_audio_encoder.runtime import codec_file
from ml_audio_encoder.runtime.codec_file import MLAEFile, bits_per_code


def make_file(codebook_size=1024, channels=2, n_q=3, frames=37, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    fields = dict(
        sample_rate=44100,
        original_length=frames * 320 * 44100 // 24000,
        preset="small_24khz",
        fingerprint=("ab" * 32),
        model_sample_rate=24000,
        hop_length=320,
        codebook_size=codebook_size,
        chunk_length=375,
        input_loudness_db=-23.25,
        applied_gain_db=7.25,
        codes=rng.integers(0, codebook_size, (channels, n_q, frames)).astype(np.int32),
    )
    fields.update(overrides)
    return MLAEFile(**fields)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("size,bits", [(1, 1), (2, 1), (3, 2), (1000, 10), (1024, 10), (1025, 11), (4096, 12)])
def test_bits_per_code(size, bits):
    assert bits_per_code(size) == bits


@pytest.mark.parametrize("bits", [1, 3, 8, 10, 12, 17, 32])
def test_pack_unpack_inverse(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 2**bits, 1001, dtype=np.uint64)
    packed = codec_file.pack_codes(values, bits)
    assert len(packed) == (1001 * bits + 7) // 8
    np.testing.assert_array_equal(codec_file.unpack_codes(packed, 1001, bits), values.astype(np.int64))


def test_pack_is_msb_first():
    assert codec_file.pack_codes(np.array([1, 1023]), 10) == bytes([0b00000000, 0b01111111, 0b11110000])


def test_pack_spans_pieces(monkeypatch):
    monkeypatch.setattr(codec_file, "_PACK_PIECE", 16)  # force several pieces on a small array
    values = np.arange(1000) % 1024
    packed = codec_file.pack_codes(values, 10)
    np.testing.assert_array_equal(codec_file.unpack_codes(packed, 1000, 10), values)


@pytest.mark.parametrize("codebook_size", [2, 1000, 1024, 4096])
@pytest.mark.parametrize("channels,n_q", [(1, 1), (2, 3), (3, 12)])
def test_round_trip_bit_exact(codebook_size, channels, n_q):
    f = make_file(codebook_size, channels, n_q, frames=41, seed=codebook_size + channels)
    data = codec_file.to_bytes(f)
    bits = bits_per_code(codebook_size)
    header = 57 + 32 + len("small_24khz")
    assert len(data) == header + (channels * n_q * 41 * bits + 7) // 8 + 4
    g = codec_file.from_bytes(data)
    np.testing.assert_array_equal(g.codes, f.codes)
    assert g.codes.dtype == np.int32 and g.codes.shape == (channels, n_q, 41)
    for name in ("sample_rate", "original_length", "preset", "fingerprint", "model_sample_rate", "hop_length",
                 "codebook_size", "chunk_length", "input_loudness_db", "applied_gain_db"):
        assert getattr(g, name) == getattr(f, name), name
    assert g.version == 1 and g.entropy == "none"  # bit-packed codes are written as version 1, as ever


def test_write_read_path_and_fileobj(tmp_path):
    f = make_file(input_loudness_db=float("-inf"), applied_gain_db=0.0, preset="ünïcode", fingerprint="")
    path = tmp_path / "x.mlae"
    codec_file.write(path, f)
    assert not (tmp_path / "x.mlae.part").exists()
    g = codec_file.read(path)
    np.testing.assert_array_equal(g.codes, f.codes)
    assert g.input_loudness_db == float("-inf") and g.preset == "ünïcode" and g.fingerprint == ""
    buf = io.BytesIO()
    codec_file.write(buf, f)
    buf.seek(0)
    np.testing.assert_array_equal(codec_file.read(buf).codes, f.codes)


def test_derived_properties():
    f = make_file(codebook_size=1024, channels=2, n_q=8, frames=75)
    assert (f.channels, f.n_quantizers, f.n_frames, f.bits_per_code) == (2, 8, 75, 10)
    assert f.frame_rate == 75.0
    assert f.bitrate_kbps == pytest.approx(2 * 8 * 10 * 75 / 1000)  # 6 kbps per channel


def test_fewer_levels_make_smaller_files():
    full = make_file(n_q=12)
    part = make_file(n_q=4)
    assert len(codec_file.to_bytes(part)) < len(codec_file.to_bytes(full))


def test_every_truncation_rejected():
    data = codec_file.to_bytes(make_file(channels=1, n_q=2, frames=9))
    for n in range(len(data)):
        with pytest.raises(CodecFileError):
            codec_file.from_bytes(data[:n])


def test_every_bit_flip_rejected():
    data = bytearray(codec_file.to_bytes(make_file(channels=1, n_q=2, frames=9)))
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            corrupted = bytearray(data)
            corrupted[i] ^= bit
            with pytest.raises(CodecFileError):
                codec_file.from_bytes(bytes(corrupted))


def test_crc_message():
    data = bytearray(codec_file.to_bytes(make_file()))
    data[-10] ^= 0x04  # inside the payload
    with pytest.raises(CodecFileError, match="CRC32"):
        codec_file.from_bytes(bytes(data), name="song.mlae")


def test_trailing_bytes_rejected():
    with pytest.raises(CodecFileError, match="unexpected bytes"):
        codec_file.from_bytes(codec_file.to_bytes(make_file()) + b"\0")


@pytest.mark.parametrize("blob", [b"", b"ML", b"RIFF\x00\x00\x00\x00WAVE", b"\x93NUMPY\x01\x00", b"PK\x03\x04" * 30])
def test_wrong_magic_or_empty(tmp_path, blob):
    path = tmp_path / "bad.mlae"
    path.write_bytes(blob)
    with pytest.raises(CodecFileError) as err:
        codec_file.read(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_future_version_rejected_even_with_valid_crc():
    data = codec_file.to_bytes(make_file())
    future = with_crc(data[:4] + struct.pack("<H", codec_file.FORMAT_VERSION + 1) + data[6:-4])
    with pytest.raises(CodecFileError, match="newer"):
        codec_file.from_bytes(future)


def test_out_of_range_code_rejected_even_with_valid_crc():
    f = make_file(codebook_size=1000, channels=1, n_q=1, frames=4, codes=np.full((1, 1, 4), 999, np.int32))
    data = bytearray(codec_file.to_bytes(f))
    data[-5] |= 0xFF  # last payload byte: pushes the last code to 1023 (10 bits hold it, the codebook does not)
    with pytest.raises(CodecFileError, match="codebook size"):
        codec_file.from_bytes(with_crc(bytes(data[:-4])))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(codes=np.zeros((2, 3), np.int32)),
        dict(codes=np.full((1, 1, 3), 1024, np.int32)),
        dict(codes=np.full((1, 1, 3), -1, np.int32)),
        dict(codes=np.zeros((1, 1, 3), np.float32)),
        dict(fingerprint="not hex"),
        dict(hop_length=0),
    ],
)
def test_write_rejects_invalid(overrides):
    with pytest.raises(CodecFileError):
        codec_file.to_bytes(make_file(**overrides))


def forge(f, **fields):
    """The bytes of ``f`` with header fields replaced as the writer never would, and a valid CRC."""
    codes = np.asarray(f.codes)
    v = dict(sample_rate=f.sample_rate, channels=codes.shape[0], original_length=f.original_length,
             model_sample_rate=f.model_sample_rate, hop_length=f.hop_length, codebook_size=f.codebook_size,
             n_quantizers=codes.shape[1], chunk_length=f.chunk_length, n_frames=codes.shape[2],
             input_loudness_db=f.input_loudness_db, applied_gain_db=f.applied_gain_db,
             fingerprint=bytes.fromhex(f.fingerprint), preset=f.preset.encode("utf-8"))
    v.update(fields)
    header = codec_file._FIXED.pack(
        codec_file.MAGIC, 1, v["sample_rate"], v["channels"], v["original_length"],
        v["model_sample_rate"], v["hop_length"], v["codebook_size"], v["n_quantizers"], v["chunk_length"],
        v["n_frames"], v["input_loudness_db"], v["applied_gain_db"], len(v["fingerprint"]), len(v["preset"]),
    )
    payload = v.get("payload", codec_file.pack_codes(codes.transpose(2, 0, 1), bits_per_code(f.codebook_size)))
    return with_crc(header + v["fingerprint"] + v["preset"] + payload)


def test_forge_reproduces_the_writer():
    f = make_file()
    assert forge(f) == codec_file.to_bytes(f)


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(applied_gain_db=float("nan")), "applied gain"),
        (dict(applied_gain_db=float("inf")), "applied gain"),
        (dict(applied_gain_db=1e30), "applied gain"),
        (dict(applied_gain_db=-120.5), "applied gain"),
        (dict(input_loudness_db=float("nan")), "input loudness"),
        (dict(input_loudness_db=float("inf")), "input loudness"),
        (dict(input_loudness_db=-1e30), "input loudness"),
        (dict(fingerprint=b"\x01" * 5), "fingerprint"),
        (dict(preset=b""), "preset"),
        (dict(preset=b"small\x00"), "preset"),
        (dict(preset="\ufeffsmall_24khz".encode("utf-8")), "preset"),
        (dict(original_length=2 * 21756), "frames do not match"),
        (dict(original_length=0), "original_length"),
    ],
)
def test_header_values_no_writer_produces_are_refused(fields, message):
    """A NaN gain used to decode to full-scale noise and 1e30 to silence; every such header is an error now."""
    f = make_file()
    data = forge(f, **fields)
    with pytest.raises(CodecFileError, match=message) as err:
        codec_file.from_bytes(data, name="odd.mlae")
    assert str(err.value).startswith("odd.mlae: ") and "\n" not in str(err.value)
    # and the writer refuses to produce the same header
    as_values = {k: (v.hex() if k == "fingerprint" else v.decode("utf-8") if k == "preset" else v)
                 for k, v in fields.items()}
    with pytest.raises(CodecFileError, match=message):
        codec_file.to_bytes(make_file(**as_values))


def test_limits_themselves_are_accepted():
    for gain, loudness in ((120.0, 200.0), (-120.0, -200.0), (0.0, float("-inf"))):
        f = make_file(applied_gain_db=gain, input_loudness_db=loudness)
        g = codec_file.from_bytes(codec_file.to_bytes(f))
        assert (g.applied_gain_db, g.input_loudness_db) == (gain, loudness)


def test_non_zero_padding_bits_refused():
    f = make_file(codebook_size=1024, channels=1, n_q=1, frames=3, original_length=3 * 320 * 44100 // 24000)
    payload = bytearray(codec_file.pack_codes(f.codes.transpose(2, 0, 1), 10))  # 30 bits: 2 spare
    payload[-1] |= 0x01
    with pytest.raises(CodecFileError, match="padding"):
        codec_file.from_bytes(forge(f, payload=bytes(payload)))


def test_save_and_load_methods(tmp_path):
    f = make_file()
    path = tmp_path / "song.mlae"
    f.save(path)
    g = MLAEFile.load(path)
    np.testing.assert_array_equal(g.codes, f.codes)
    assert path.read_bytes() == codec_file.to_bytes(f)
    assert g.describe(path.stat().st_size)[0] == "format version  1"
