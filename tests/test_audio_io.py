"""Reading, writing, streaming resampling and streaming loudness."""

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from conftest import sweep

from ml_audio_encoder.errors import AudioInputError
from ml_audio_encoder.runtime import audio_io


def stereo(seconds, sr, seed=0):
    noise = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32)
    return np.stack([sweep(seconds, sr), noise])


# -- files ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_save_info_and_blocks(tmp_path, ext):
    x = stereo(1.0, 16000)
    path = tmp_path / f"a.{ext}"
    audio_io.save(path, x, 16000)
    info = audio_io.info(path)
    assert (info.sample_rate, info.channels, info.frames) == (16000, 2, 16000)
    blocks = list(audio_io.iter_blocks(path, block_frames=3000))
    assert all(b.shape[0] == 2 and b.dtype == np.float32 for b in blocks) and len(blocks) == 6
    joined = np.concatenate(blocks, axis=1)
    np.testing.assert_array_equal(joined, sf.read(path, dtype="float32", always_2d=True)[0].T)
    if ext != "ogg":  # lossless
        np.testing.assert_allclose(joined, x, atol=1 / 2**14)


def test_wav_defaults_to_pcm16_and_clips(tmp_path):
    path = tmp_path / "loud.wav"
    audio_io.save(path, np.array([[0.5, 1.7, -3.0]]), 8000)
    assert sf.info(path).subtype == "PCM_16"
    back, _ = audio_io.load(path)
    assert back[0, 1] > 0.99 and back[0, 2] < -0.99  # clipped, not wrapped around


def test_load_resamples(tmp_path):
    path = tmp_path / "a.wav"
    audio_io.save(path, stereo(0.5, 16000), 16000)
    audio, sr = audio_io.load(path, sample_rate=24000)
    assert sr == 24000 and audio.shape == (2, 12000)


def test_writer_removes_partial_file_on_error(tmp_path):
    path = tmp_path / "out.flac"
    with pytest.raises(RuntimeError):
        with audio_io.AudioWriter(path, 16000, 1) as writer:
            writer.write(np.zeros((1, 100)))
            raise RuntimeError("interrupted")
    assert not path.exists()


def test_unreadable_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"definitely not audio" * 50)
    no_samples = tmp_path / "zero.wav"
    sf.write(no_samples, np.zeros((0, 1)), 16000)
    for path in (empty, garbage, no_samples):
        with pytest.raises(AudioInputError) as err:
            list(audio_io.iter_blocks(path))
        assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError):
        list(audio_io.iter_blocks(tmp_path / "missing.wav"))


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_truncated_files(tmp_path, ext):
    path = tmp_path / f"t.{ext}"
    audio_io.save(path, stereo(1.0, 16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioInputError, match="truncated"):
        list(audio_io.iter_blocks(path))


def test_nan_rejected(tmp_path):
    x = stereo(0.5, 16000)
    x[1, 100] = np.nan
    with pytest.raises(AudioInputError, match="NaN"):
        audio_io.as_channels_first(x)
    path = tmp_path / "nan.wav"
    audio_io.save(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="NaN"):
        list(audio_io.iter_blocks(path))
    with pytest.raises(AudioInputError):
        audio_io.integrated_loudness(np.array([0.0, np.inf]), 16000)


def test_array_validation():
    assert audio_io.as_channels_first(np.zeros(10)).shape == (1, 10)
    np.testing.assert_allclose(audio_io.as_channels_first(np.array([[16384, -32768]], np.int16)), [[0.5, -1.0]])
    with pytest.raises(AudioInputError, match="transpose"):
        audio_io.as_channels_first(np.zeros((1000, 2)))
    with pytest.raises(AudioInputError):
        audio_io.as_channels_first(np.zeros((1, 0)))
    with pytest.raises(AudioInputError):
        audio_io.as_channels_first(np.zeros((2, 3, 4)))


# -- resampling -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("orig,target", [(44100, 24000), (16000, 24000), (48000, 16000), (24000, 44100)])
def test_resample_matches_scipy(orig, target):
    x = stereo(0.3, orig)
    ours = audio_io.resample(x, orig, target)
    ref = scipy.signal.resample_poly(x.astype(np.float64), target, orig, axis=-1)
    assert ours.shape == ref.shape == (2, audio_io.resampled_length(x.shape[1], orig, target))
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("orig,target", [(44100, 24000), (16000, 24000), (22050, 16000), (16000, 16000)])
@pytest.mark.parametrize("block", [997, 8192])
def test_stream_resampling_equals_whole(orig, target, block):
    x = stereo(0.7, orig, seed=block)[:, : int(0.7 * orig) - 13]  # a length that is no multiple of anything
    whole = audio_io.resample(x, orig, target)
    streamed = np.concatenate(
        list(audio_io.resample_blocks(audio_io.iter_array_blocks(x, block), orig, target)), axis=1
    )
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


# -- loudness ---------------------------------------------------------------------------------------------------
def loudness_cases(sr):
    t = np.arange(int(3.3 * sr)) / sr
    rng = np.random.default_rng(sr)
    return {
        "sine": 0.5 * np.sin(2 * np.pi * 997 * t),
        "noise": 0.05 * rng.standard_normal(len(t)),
        "gated": np.where(t < 1.5, 0.001, 0.5) * np.sin(2 * np.pi * 300 * t),  # the quiet part is gated out
        "stereo": np.stack([sweep(3.3, sr), 0.1 * rng.standard_normal(len(t))]),
    }


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_loudness_matches_pyloudnorm(sr):
    pyloudnorm = pytest.importorskip("pyloudnorm", reason="the reference meter (pip install -e '.[dev]')")
    for name, x in loudness_cases(sr).items():
        x = np.atleast_2d(x)
        ref = pyloudnorm.Meter(sr).integrated_loudness(x.T)
        meter = audio_io.LoudnessMeter(sr, x.shape[0])
        for block in audio_io.iter_array_blocks(x, 4321):  # boundaries unrelated to the 100 ms step
            meter.process(block)
        assert meter.integrated() == pytest.approx(ref, abs=0.1), name
        assert audio_io.integrated_loudness(x, sr) == pytest.approx(ref, abs=0.1), name


def test_loudness_of_silence_and_short_input():
    assert audio_io.integrated_loudness(np.zeros((2, 16000)), 16000) == float("-inf")
    assert audio_io.integrated_loudness(1e-6 * np.ones(16000), 16000) == float("-inf")  # below the -70 gate
    assert audio_io.integrated_loudness(np.zeros((1, 0)), 16000) == float("-inf")
    short = 0.1 * np.sin(np.arange(800) * 0.3)  # 50 ms: shorter than one gating block
    assert np.isfinite(audio_io.integrated_loudness(short, 16000))


def test_loudness_scales_with_gain():
    x = stereo(2.0, 16000)
    base = audio_io.integrated_loudness(x, 16000)
    assert audio_io.integrated_loudness(x * 10 ** (6 / 20), 16000) == pytest.approx(base + 6, abs=1e-6)


def test_to_mono_is_channels_first():
    x = np.stack([np.ones(5, np.float32), 3 * np.ones(5, np.float32)])  # (channels, samples)
    np.testing.assert_array_equal(audio_io.to_mono(x), 2 * np.ones(5, np.float32))
    np.testing.assert_array_equal(audio_io.to_mono(x[0]), x[0])
    assert audio_io.to_mono(x[:1]).shape == (5,) and audio_io.to_mono(x).dtype == np.float32
    with pytest.raises(AudioInputError):
        audio_io.to_mono(np.zeros((1, 2, 3)))


def test_resample_takes_both_layouts():
    x = stereo(0.3, 16000)
    both = audio_io.resample(x, 16000, 24000)
    np.testing.assert_array_equal(audio_io.resample(x[1], 16000, 24000), both[1])
    assert both.shape == (2, audio_io.resampled_length(x.shape[1], 16000, 24000))


def test_iter_audio_files_is_recursive_and_sorted(tmp_path):
    for rel in ("b/z.wav", "b/a.FLAC", "a/x.ogg", "a/notes.txt"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in map(__import__("pathlib").Path, audio_io.iter_audio_files(
        tmp_path))]
    assert found == ["a/x.ogg", "b/a.FLAC", "b/z.wav"]
