"""Chunked compress / decompress with a tiny random-initialised model."""

import numpy as np
import pytest
import soundfile as sf
from conftest import sweep

from ml_audio_encoder.errors import AudioInputError, CodecFileError
from ml_audio_encoder.protocol import Codec
from ml_audio_encoder.runtime import audio_io, codec_file
from ml_audio_encoder.runtime.compress import (
    _gain_db,
    _sample_windows,
    check_model,
    compress,
    context_frames,
    decompress,
)


def signal(seconds, sr, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    rows = [sweep(seconds, sr), 0.1 * rng.standard_normal(int(seconds * sr)).astype(np.float32)]
    return np.stack(rows[:channels]) if channels > 1 else rows[0][None]


def whole_file_codes(model, f, audio):
    """Codes of one unchunked encode of the same gained, resampled signal."""
    x = audio_io.resample(audio, f.sample_rate, model.sample_rate) * np.float32(10 ** (f.applied_gain_db / 20))
    _, codes, *_ = model.encode(x[:, :, None], n_quantizers=f.n_quantizers)
    return np.asarray(codes)


def test_chunked_codes_equal_whole_file(tiny_model):
    x = signal(1.3, 16000, channels=2)
    f = compress(tiny_model, x, sample_rate=16000, win_duration=0.3)  # 4 full windows and a partial one
    assert f.chunk_length == 120 and f.n_frames == 520
    assert (f.codes == whole_file_codes(tiny_model, f, x)).mean() >= 0.99


def test_chunked_decode_equals_whole_file(tiny_model):
    x = signal(1.3, 16000, channels=2)
    f = compress(tiny_model, x, sample_rate=16000, win_duration=0.3)
    chunked = decompress(tiny_model, f)
    f.chunk_length = 0  # one window: a whole-file decode of the same codes
    whole = decompress(tiny_model, f)
    assert chunked.shape == whole.shape == x.shape
    np.testing.assert_allclose(chunked, whole, atol=1e-3)


def test_round_trip_through_bytes_is_bit_exact(tiny_model, tmp_path):
    x = signal(0.6, 16000)
    f = compress(tiny_model, x, sample_rate=16000)
    path = tmp_path / "a.mlae"
    codec_file.write(path, f)
    g = codec_file.read(path)
    np.testing.assert_array_equal(g.codes, f.codes)
    np.testing.assert_array_equal(decompress(tiny_model, path), decompress(tiny_model, f))


@pytest.mark.parametrize("sr,channels", [(44100, 1), (24000, 2), (16000, 2)])
def test_length_rate_and_channels_restored(tiny_model, tmp_path, sr, channels):
    """Into the 16 kHz test model: 44.1 and 24 kHz inputs go through both resamplers, 16 kHz through none."""
    x = signal(0.77, sr, channels)
    path = tmp_path / "in.wav"
    audio_io.save(path, x, sr, subtype="FLOAT")
    f = compress(tiny_model, path, win_duration=0.25)
    assert (f.sample_rate, f.channels, f.original_length) == (sr, channels, x.shape[1])
    out = tmp_path / "out.wav"
    assert decompress(tiny_model, f, out_path=out, subtype="FLOAT") == str(out)
    y, out_sr = sf.read(out, dtype="float32", always_2d=True)
    assert out_sr == sr and y.T.shape == x.shape and np.all(np.isfinite(y))


def test_file_and_array_inputs_agree(tiny_model, tmp_path):
    x = signal(0.5, 16000, channels=2)
    path = tmp_path / "in.flac"
    audio_io.save(path, x, 16000, subtype="PCM_24")
    x24, _ = audio_io.load(path)
    from_file = compress(tiny_model, path)
    from_array = compress(tiny_model, x24, sample_rate=16000)
    np.testing.assert_array_equal(from_file.codes, from_array.codes)
    assert from_file.applied_gain_db == from_array.applied_gain_db


def test_n_quantizers_stores_leading_levels_and_shrinks_file(tiny_model):
    x = signal(0.5, 16000)
    full = compress(tiny_model, x, sample_rate=16000)
    two = compress(tiny_model, x, sample_rate=16000, n_quantizers=2)
    assert full.n_quantizers == tiny_model.n_codebooks and two.n_quantizers == 2
    np.testing.assert_array_equal(two.codes, full.codes[:, :2])  # residual levels do not depend on later ones
    assert len(codec_file.to_bytes(two)) < len(codec_file.to_bytes(full))
    assert two.bitrate_kbps < full.bitrate_kbps
    assert decompress(tiny_model, two).shape == x.shape
    with pytest.raises(ValueError):
        compress(tiny_model, x, sample_rate=16000, n_quantizers=tiny_model.n_codebooks + 1)


def test_loudness_normalised_and_restored(tiny_model):
    x = 0.01 * signal(1.0, 16000)
    f = compress(tiny_model, x, sample_rate=16000)
    loudness = audio_io.integrated_loudness(x, 16000)
    assert f.input_loudness_db == pytest.approx(loudness, abs=1e-3)
    assert f.applied_gain_db == pytest.approx(-16 - loudness, abs=1e-3)
    g = compress(tiny_model, x, sample_rate=16000, normalize_db=None)
    assert g.applied_gain_db == 0.0


def test_gain_keeps_peak_at_most_one():
    assert _gain_db(-30.0, 0.1, -16.0) == pytest.approx(14.0)  # peak 0.1 * 5.0 stays below 1
    gain = _gain_db(-30.0, 0.5, -16.0)  # +14 dB would put the peak at 2.5
    assert 0.5 * 10 ** (gain / 20) <= 1.0 and gain == pytest.approx(20 * np.log10(2), abs=1e-4)
    assert _gain_db(float("-inf"), 0.0, -16.0) == 0.0
    assert gain == float(np.float32(gain))  # what the header stores is what was applied


def test_silence(tiny_model):
    f = compress(tiny_model, np.zeros((2, 8000), np.float32), sample_rate=16000)
    assert f.input_loudness_db == float("-inf") and f.applied_gain_db == 0.0
    g = codec_file.from_bytes(codec_file.to_bytes(f))
    y = decompress(tiny_model, g)
    # A random decoder turns silence codes into some bounded signal; a trained one gives near silence.
    assert y.shape == (2, 8000) and np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0


def test_bad_input_audio(tiny_model, tmp_path):
    nan = signal(0.2, 16000)
    nan[0, 5] = np.nan
    with pytest.raises(AudioInputError):
        compress(tiny_model, nan, sample_rate=16000)
    with pytest.raises(AudioInputError):
        compress(tiny_model, np.zeros((1, 0)), sample_rate=16000)
    with pytest.raises(AudioInputError):
        compress(tiny_model, signal(0.2, 16000))  # array without a sample rate
    garbage = tmp_path / "x.wav"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(AudioInputError, match="x.wav"):
        compress(tiny_model, garbage)
    with pytest.raises(FileNotFoundError):
        compress(tiny_model, tmp_path / "missing.wav")


def test_bad_mlae_files(tiny_model, tmp_path):
    data = codec_file.to_bytes(compress(tiny_model, signal(0.2, 16000), sample_rate=16000))
    cases = {
        "truncated": data[:-7],
        "bitflip": data[:70] + bytes([data[70] ^ 1]) + data[71:],
        "magic": b"NOPE" + data[4:],
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.mlae"
        path.write_bytes(blob)
        with pytest.raises(CodecFileError):
            decompress(tiny_model, path)


def test_wrong_model_rejected(tiny_model):
    """Each header field that ties a file to its model, changed in turn (cheaper than building other models)."""
    f = compress(tiny_model, signal(0.2, 16000), sample_rate=16000)
    changes = {
        "model_sample_rate": (24000, "sample rate 24000 vs 16000"),
        "fingerprint": ("00" * 32, "fingerprint 0000"),
        "preset": ("small_24khz", "preset small_24khz vs tiny_test"),
        "codebook_size": (1024, "codebook size 1024 vs 64"),
        "hop_length": (320, "hop length 320 vs 40"),
    }
    for field, (value, message) in changes.items():
        g = codec_file.from_bytes(codec_file.to_bytes(f))
        setattr(g, field, value)
        with pytest.raises(CodecFileError, match=message):
            decompress(tiny_model, g)
    g = codec_file.from_bytes(codec_file.to_bytes(f))
    g.codes = np.zeros((1, tiny_model.n_codebooks + 1, g.n_frames), np.int32)
    with pytest.raises(CodecFileError, match="levels"):
        check_model(tiny_model, g)


def test_inconsistent_frame_count_rejected(tiny_model):
    f = compress(tiny_model, signal(0.2, 16000), sample_rate=16000)
    f.original_length *= 2
    with pytest.raises(CodecFileError, match="frames"):
        decompress(tiny_model, f)


def test_windows_slice_the_stream_exactly():
    """The window cutter sees only blocks, yet yields the same samples as slicing the whole padded signal."""
    hop, window, context = 4, 5, 3
    x = np.arange(2 * 97, dtype=np.float32).reshape(2, 97)
    n_frames = -(-97 // hop)
    padded = np.pad(x, [(0, 0), (0, n_frames * hop - 97)])
    starts = []
    for start, count, lo, chunk in _sample_windows(
        audio_io.iter_array_blocks(x, 7), 2, n_frames, hop, window, context
    ):
        hi = min(n_frames, start + window + context)
        assert lo == max(0, start - context) and count == min(window, n_frames - start)
        np.testing.assert_array_equal(chunk, padded[:, lo * hop : hi * hop])
        starts.append(start)
    assert starts == list(range(0, n_frames, window))


def test_context_covers_receptive_field(tiny_model):
    assert context_frames(tiny_model) * tiny_model.hop_length > tiny_model.receptive_field


def test_levels_no_file_can_hold_are_refused(tiny_model):
    """A peak of 1e7 needs a gain of -140 dB: beyond what a .mlae header may say, so the input is refused."""
    with pytest.raises(AudioInputError, match="level out of range"):
        compress(tiny_model, 1e7 * signal(0.2, 16000), sample_rate=16000)
    f = compress(tiny_model, 1e5 * signal(0.2, 16000), sample_rate=16000)  # -100 dB still fits
    assert -120 <= f.applied_gain_db < -90
    np.testing.assert_array_equal(codec_file.from_bytes(codec_file.to_bytes(f)).codes, f.codes)


def test_in_memory_files_with_impossible_headers_are_refused(tiny_model):
    f = compress(tiny_model, signal(0.2, 16000), sample_rate=16000)
    f.applied_gain_db = float("nan")  # would decode to full-scale noise
    with pytest.raises(CodecFileError, match="applied gain"):
        decompress(tiny_model, f)


def test_the_model_is_a_codec(tiny_model):
    assert isinstance(tiny_model, Codec)
    assert tiny_model.bitrate(2) == 2 * tiny_model.bits_per_code * tiny_model.frame_rate
