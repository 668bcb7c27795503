"""The frame-rate codec (``fast_24khz``): matmul STFT pair, ConvNeXt blocks, iSTFT head, hop arithmetic, chunking,
saving, TF/JAX parity and the LiteRT export."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ml_audio_encoder import MLAudioEncoder
from ml_audio_encoder.nn import spectral as S

# A frame-rate model small enough for unit tests: hop 40 at 16 kHz (400 frames/s), n_fft 160.
TINY_FAST = dict(sample_rate=16000, encoder_dim=4, encoder_rates=(2, 4, 5), latent_dim=16, decoder_dim=16,
                 decoder_rates=(5, 4, 2), n_codebooks=4, codebook_size=64, codebook_dim=4, quantizer_dropout=0.5,
                 encoder_type="stft", decoder_type="istft", convnext_dim=16, encoder_blocks=2, decoder_blocks=2,
                 n_fft=160, preset="tiny_fast_test")


@pytest.fixture(scope="module")
def tiny_fast():
    import keras

    keras.utils.set_random_seed(0)
    return MLAudioEncoder(**TINY_FAST)


@pytest.fixture(scope="module")
def tiny_rotation():
    import keras

    keras.utils.set_random_seed(0)
    return MLAudioEncoder(**{**TINY_FAST, "phase_rotation": True})


def _np(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.mark.parametrize("frames", [1, 2, 7, 40])
def test_matmul_stft_matches_numpy_and_inverts_exactly(frames):
    x = np.random.default_rng(frames).standard_normal((2, frames * 320)).astype("float32")
    real, imag = S.rfft_frames(x, 1280, 320)
    assert real.shape == (2, frames, 641)
    framed = np.pad(x, [(0, 0), (480, 480)])
    ref = np.stack([np.fft.rfft(framed[:, t * 320: t * 320 + 1280] * S.hann_window(1280), axis=-1)
                    for t in range(frames)], axis=1)
    np.testing.assert_allclose(_np(real), ref.real, atol=1e-3)
    np.testing.assert_allclose(_np(imag), ref.imag, atol=1e-3)
    y = _np(S.irfft_frames(real, imag, 320))
    assert y.shape == x.shape  # output length equals input length, edges included
    np.testing.assert_allclose(y, x, atol=1e-4)


def test_istft_matches_tensorflow_inverse_stft_in_the_interior():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    spec = (rng.standard_normal((1, 20, 641)) + 1j * rng.standard_normal((1, 20, 641))).astype("complex64")
    ours = _np(S.irfft_frames(spec.real, spec.imag, 320))[0]
    window = tf.signal.inverse_stft_window_fn(320, forward_window_fn=tf.signal.hann_window)
    ref = tf.signal.inverse_stft(spec, 1280, 320, 1280, window_fn=window).numpy()[0]
    # tf's frames start at 0 (no "same" padding): our sample s is its sample s + 480.
    np.testing.assert_allclose(ours[1000:5000], ref[1480:5480], atol=1e-4)


def test_fast_preset_shapes_and_hop_arithmetic():
    model = MLAudioEncoder.from_preset("fast_24khz")
    assert model.hop_length == 320 and model.frame_rate == 75 and model.n_fft == 1280
    assert model.bitrate(8) == 6000 and model.n_codebooks == 12 and model.codebook_size == 1024
    assert 10e6 < model.count_params() < 25e6
    x = np.zeros((2, 24000 + 7, 1), "float32")
    out = model(x)
    assert out["audio"].shape == (2, 24007, 1) and out["codes"].shape == (2, 12, 76)
    # 8 ConvNeXt blocks of kernel 7 (3 frames each), the embedding conv (3) and the STFT overlap (2)
    assert model.context_frames == 29 and model.receptive_field == 29 * 320
    conv_encoder = MLAudioEncoder.from_preset("fast_24khz", encoder_type="conv")
    assert conv_encoder(x)["codes"].shape == (2, 12, 76)


@pytest.mark.parametrize("length", [1, 39, 40, 41, 1000, 4001])
def test_output_length_equals_input_length(tiny_fast, length):
    x = np.random.default_rng(length).standard_normal((1, length, 1)).astype("float32") * 0.1
    assert tiny_fast(x)["audio"].shape == (1, length, 1)
    codes = tiny_fast.encode_codes(x)
    assert codes.shape == (1, 4, -(-length // 40))
    assert tiny_fast.decode_codes(codes).shape == (1, codes.shape[-1] * 40, 1)


def test_chunked_and_whole_file_codes_and_audio_agree_away_from_edges(tiny_fast):
    hop, ctx = tiny_fast.hop_length, tiny_fast.context_frames
    x = np.random.default_rng(1).standard_normal((1, 200 * hop, 1)).astype("float32") * 0.2
    codes = _np(tiny_fast.encode_codes(x))
    lo, hi = 80, 120
    chunk = _np(tiny_fast.encode_codes(x[:, (lo - ctx) * hop: (hi + ctx) * hop]))
    np.testing.assert_array_equal(chunk[:, :, ctx:-ctx], codes[:, :, lo:hi])
    audio = _np(tiny_fast.decode_codes(codes))
    part = _np(tiny_fast.decode_codes(codes[:, :, lo - ctx: hi + ctx]))
    np.testing.assert_allclose(part[:, ctx * hop: -ctx * hop], audio[:, lo * hop: hi * hop], atol=1e-5)
    # one frame less context than reported is not enough: the reported context is tight
    short = _np(tiny_fast.decode_codes(codes[:, :, lo - ctx + 1: hi + ctx - 1]))
    assert np.abs(short[:, (ctx - 1) * hop: -(ctx - 1) * hop] - audio[:, lo * hop: hi * hop]).max() > 1e-6


@pytest.mark.parametrize("rotation", [False, True], ids=["plain", "phase_rotation"])
def test_compress_decompress_round_trip_is_seamless(tmp_path, tiny_fast, tiny_rotation, rotation):
    from ml_audio_encoder.runtime.compress import compress, decompress

    model = tiny_rotation if rotation else tiny_fast
    t = np.arange(16000 * 3) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32")
    whole = compress(model, x, sample_rate=16000, n_quantizers=4, win_duration=10.0)
    chunked = compress(model, x, sample_rate=16000, n_quantizers=4, win_duration=0.5)
    assert chunked.chunk_length % model.frame_period == 0
    np.testing.assert_array_equal(whole.codes, chunked.codes)
    a, b = decompress(model, whole), decompress(model, chunked)  # each decodes in its file's windows
    assert a.shape == (1, len(x))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_phase_rotation_lets_steady_frames_make_a_steady_tone():
    """Frames that are all alike (what a translation-equivariant backbone makes of steady input): read as each
    frame's own phase they give a signal periodic in the hop (a comb at multiples of the frame rate); read as phase
    at a fixed origin (``phase_rotation``) they give a tone at the bin's frequency."""
    import keras

    from ml_audio_encoder.nn.heads import ISTFTHead

    n_fft, hop, k0, frames = 160, 40, 7, 64
    spectra = {}
    for rotation in (False, True):
        head = ISTFTHead(n_fft, hop, phase_rotation=rotation)
        head.build((1, frames, 1))
        bias = np.full(n_fft + 2, -20.0, "float32")
        bias[k0] = 0.0  # log-magnitude: one bin; phase: 0
        bias[n_fft // 2 + 1:] = 0.0
        head.out.set_weights([np.zeros((1, n_fft + 2), "float32"), bias])
        assert head.frame_period == (4 if rotation else 1)
        y = np.asarray(keras.ops.convert_to_numpy(head(np.ones((1, frames, 1), "float32"))))[0, :, 0]
        spectra[rotation] = np.abs(np.fft.rfft(y[n_fft: -n_fft]))
    freqs = np.fft.rfftfreq(frames * hop - 2 * n_fft, 1 / 16000)
    tone = k0 * 16000 / n_fft  # 700 Hz
    assert abs(freqs[np.argmax(spectra[True])] - tone) < 20
    frame_rate = 16000 / hop  # 400 Hz: the plain head can only make its multiples
    peak = freqs[np.argmax(spectra[False])]
    assert abs(peak / frame_rate - round(peak / frame_rate)) < 0.05 and abs(peak - tone) > 50


def test_keras_file_round_trip(tmp_path, tiny_fast):
    import keras

    x = np.random.default_rng(2).standard_normal((1, 800, 1)).astype("float32") * 0.3
    path = str(tmp_path / "fast.keras")
    tiny_fast.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["encoder_type"] == "stft" and loaded.fingerprint() == tiny_fast.fingerprint()
    np.testing.assert_allclose(_np(loaded(x)["audio"]), _np(tiny_fast(x)["audio"]), atol=1e-6)


@pytest.mark.parametrize("rotation", [False, True], ids=["plain", "phase_rotation"])
def test_tensorflow_and_jax_give_the_same_output(tmp_path, tiny_fast, tiny_rotation, rotation):
    tiny_fast = tiny_rotation if rotation else tiny_fast
    x = np.random.default_rng(3).standard_normal((1, 1600, 1)).astype("float32") * 0.3
    np.save(tmp_path / "x.npy", x)
    tiny_fast.save(str(tmp_path / "m.keras"))
    codes = _np(tiny_fast.encode_codes(x))
    np.save(tmp_path / "codes.npy", codes)
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        import ml_audio_encoder
        m = keras.models.load_model({str(tmp_path / 'm.keras')!r})
        x = np.load({str(tmp_path / 'x.npy')!r})
        np.save({str(tmp_path / 'latent.npy')!r}, np.asarray(m.encoder(x)))
        np.save({str(tmp_path / 'y.npy')!r}, np.asarray(m.decode_codes(np.load({str(tmp_path / 'codes.npy')!r}))))
        print(keras.backend.backend(), m.fingerprint())
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    backend, fingerprint = res.stdout.split()[-2:]
    assert backend == "jax" and fingerprint == tiny_fast.fingerprint()
    np.testing.assert_allclose(np.load(tmp_path / "latent.npy"), _np(tiny_fast.encoder(x)), atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), _np(tiny_fast.decode_codes(codes)), atol=1e-4)


@pytest.mark.parametrize("rotation", [False, True], ids=["plain", "phase_rotation"])
def test_litert_export_gives_the_keras_codes_and_audio(tmp_path, tiny_fast, tiny_rotation, rotation):
    pytest.importorskip("tensorflow")
    tiny_fast = tiny_rotation if rotation else tiny_fast
    from ml_audio_encoder.runtime import lite
    from ml_audio_encoder.runtime.export import export_lite

    if not lite.available():
        pytest.skip("ai-edge-litert not installed")
    export_lite(tiny_fast, str(tmp_path / "codec"), float16=False)  # builtins only: the iSTFT is matmuls
    codec = lite.LiteCodec.load(str(tmp_path / "codec"))
    assert codec.context_frames == tiny_fast.context_frames and codec.frame_period == tiny_fast.frame_period
    x = np.random.default_rng(4).standard_normal((1, 120 * 40, 1)).astype("float32") * 0.2
    keras_codes = _np(tiny_fast.encode_codes(x, n_quantizers=3))
    lite_codes = codec.encode_codes(x, n_quantizers=3)
    assert (lite_codes == keras_codes).mean() > 0.99  # float32 both; a near-tie may flip one code
    np.testing.assert_allclose(codec.decode_codes(keras_codes), _np(tiny_fast.decode_codes(keras_codes)), atol=1e-4)


def test_float16_litert_export_codes_digital_silence_like_keras(tmp_path, tiny_fast):
    """A float16 export stores every constant in half precision; the STFT stem's power floor (1e-10) must survive
    it, or digital silence gives log(0), NaN features and code 0 (and the frames around it with it)."""
    pytest.importorskip("tensorflow")
    from ml_audio_encoder.nn.heads import STFTStem
    from ml_audio_encoder.runtime import lite
    from ml_audio_encoder.runtime.export import export_lite

    if not lite.available():
        pytest.skip("ai-edge-litert not installed")
    export_lite(tiny_fast, str(tmp_path / "codec16"), float16=True)
    codec = lite.LiteCodec.load(str(tmp_path / "codec16"))
    x = np.zeros((1, 120 * 20, 1), np.float32)
    x[:, 1200:] = np.random.default_rng(5).standard_normal((1, 1200, 1)) * 0.2  # silence, then sound
    keras_codes = _np(tiny_fast.encode_codes(x, n_quantizers=3))
    assert np.isfinite(_np(STFTStem(n_fft=tiny_fast.encoder.stem.n_fft, hop_length=tiny_fast.hop_length)(x))).all()
    assert (codec.encode_codes(x, n_quantizers=3) == keras_codes).mean() > 0.95  # float16 weights: a few near-ties
    # a pure tone: the float16 DFT matrix leaked it into every bin ~100 dB down, far above the power floor the Keras
    # model sees there; the export traces the matrix split in two float16-exact parts (spectral.float16_exact_analysis)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(120 * 20) / tiny_fast.sample_rate)).astype(np.float32)
    keras_codes = _np(tiny_fast.encode_codes(tone[None, :, None], n_quantizers=3))
    assert (codec.encode_codes(tone[None, :, None], n_quantizers=3) == keras_codes).mean() > 0.95
