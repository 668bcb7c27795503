"""The TensorFlow-free LiteRT runtime: export, equality with the Keras model, cross-runtime files, no TF import."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import sweep

pytest.importorskip("ai_edge_litert")

from ml_audio_encoder.errors import CodecFileError  # noqa: E402
from ml_audio_encoder.runtime import codec_file, lite  # noqa: E402
from ml_audio_encoder.runtime.compress import compress, decompress  # noqa: E402
from ml_audio_encoder.runtime.loading import load_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    """tiny_test exported twice: float32 (for exact comparisons) and float16 (what ships)."""
    from ml_audio_encoder.runtime.export import export_lite

    folder = tmp_path_factory.mktemp("lite")
    return {
        "float32": export_lite(tiny_model, str(folder / "tiny32"), float16=False),
        "float16": export_lite(tiny_model, str(folder / "tiny16"), float16=True),
    }


def _codec(exported, kind="float32"):
    return lite.LiteCodec.load(exported[kind]["metadata"][: -len(".json")])


def test_metadata_carries_the_keras_facts(tiny_model, exported):
    with open(exported["float32"]["metadata"]) as f:
        meta = json.load(f)
    assert meta["fingerprint"] == tiny_model.fingerprint()
    assert meta["context_frames"] == tiny_model.context_frames
    codec = _codec(exported)
    for key in ("sample_rate", "hop_length", "n_codebooks", "codebook_size", "receptive_field", "preset"):
        assert getattr(codec, key) == getattr(tiny_model, key)
    assert codec.fingerprint() == tiny_model.fingerprint()
    assert os.path.getsize(exported["float16"]["decoder"]) < os.path.getsize(exported["float32"]["decoder"])


@pytest.mark.parametrize("frames", [7, 40, 93])  # several lengths through one interpreter: dynamic resizing
def test_codes_and_audio_match_keras(tiny_model, exported, frames):
    import keras

    codec = _codec(exported)
    rng = np.random.RandomState(frames)
    x = (rng.randn(2, frames * tiny_model.hop_length - 3, 1) * 0.1).astype("float32")  # not whole frames
    ours = codec.encode_codes(x, 3)
    ref = keras.ops.convert_to_numpy(tiny_model.encode_codes(x, 3))
    assert ours.shape == ref.shape == (2, 3, frames)
    assert (ours == ref).mean() > 0.99  # float reordering may flip a near-tie
    full = keras.ops.convert_to_numpy(tiny_model.encode_codes(x))
    for n_q in (1, 3, tiny_model.n_codebooks):
        want = keras.ops.convert_to_numpy(tiny_model.decode_codes(full[:, :n_q]))
        np.testing.assert_allclose(codec.decode_codes(full[:, :n_q]), want, atol=1e-4)


def test_float16_stays_close(tiny_model, exported):
    import keras

    x = sweep(1.0, tiny_model.sample_rate)[None, :, None]
    codes = keras.ops.convert_to_numpy(tiny_model.encode_codes(x))
    want = keras.ops.convert_to_numpy(tiny_model.decode_codes(codes))
    got = _codec(exported, "float16").decode_codes(codes)
    assert np.abs(got - want).max() < 0.02


def test_bad_codes_and_levels_are_refused(exported):
    codec = _codec(exported)
    with pytest.raises(ValueError, match="codes must be in"):
        codec.decode_codes(np.full((1, 2, 5), codec.codebook_size, np.int32))
    with pytest.raises(ValueError, match="n_quantizers"):
        codec.encode_codes(np.zeros((1, 800, 1), np.float32), n_quantizers=codec.n_codebooks + 1)


def test_files_cross_runtimes(tiny_model, exported, tmp_path):
    """A file from either runtime decodes with the other: both carry the Keras weights' fingerprint."""
    codec = _codec(exported)
    x = sweep(2.0, 22050)[None]  # another rate: resampling on both sides
    from_lite = compress(codec, x, sample_rate=22050, n_quantizers=2)
    from_keras = compress(tiny_model, x, sample_rate=22050, n_quantizers=2)
    assert from_lite.fingerprint == from_keras.fingerprint == tiny_model.fingerprint()
    assert (from_lite.codes == from_keras.codes).mean() > 0.99
    a = decompress(tiny_model, from_lite)
    b = decompress(codec, from_lite)
    assert a.shape == b.shape == x.shape
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_other_weights_are_refused(exported, tmp_path):
    other = load_model("random:tiny_test")  # seeded: not the conftest model's weights
    f = compress(other, sweep(0.5, 16000)[None], sample_rate=16000)
    with pytest.raises(CodecFileError, match="weights fingerprint"):
        decompress(_codec(exported), f)


def test_both_runtimes_are_codecs(tiny_model, exported):
    from ml_audio_encoder import Codec

    codec = _codec(exported)
    assert isinstance(codec, Codec) and isinstance(tiny_model, Codec)
    for n in (None, 1, 3):
        assert codec.bitrate(n) == tiny_model.bitrate(n)
    assert codec.frame_rate == tiny_model.frame_rate


def test_importing_the_package_loads_no_tensorflow():
    """The top-level names are lazy: the errors, MLAEFile and load_model come without Keras or TensorFlow."""
    script = (
        "import sys\n"
        "import ml_audio_encoder as m\n"
        "from ml_audio_encoder import AudioInputError, CodecFileError, MLAEFile, load_model, PRESETS, Codec\n"
        "import ml_audio_encoder.runtime.compress, ml_audio_encoder.runtime.lite, ml_audio_encoder.cli\n"
        "assert MLAEFile.__name__ == 'MLAEFile' and callable(load_model)\n"
        "print(sorted(x for x in ('tensorflow', 'keras', 'jax', 'librosa') if x in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_engine_selection(exported):
    spec = exported["float32"]["metadata"]
    assert isinstance(load_model(spec), lite.LiteCodec)
    assert isinstance(load_model(spec, engine="lite"), lite.LiteCodec)
    with pytest.raises(ValueError, match="engine lite or auto"):
        load_model(spec, engine="keras")
    with pytest.raises(ValueError, match="LiteRT runtime runs"):
        load_model("random:tiny_test", engine="lite")
    with pytest.raises(ValueError, match="engine must be"):
        load_model(spec, engine="onnx")


def test_cli_round_trip_never_imports_tensorflow(exported, tmp_path):
    """`mlae compress`/`decompress` on a LiteRT codec in a fresh process: works, and TF/Keras stay unloaded."""
    import soundfile as sf

    wav = tmp_path / "in.wav"
    sf.write(wav, sweep(1.5, 16000), 16000)
    spec = exported["float16"]["metadata"]
    script = (
        "import sys\n"
        "from ml_audio_encoder.cli import main\n"
        f"assert main(['compress', {str(wav)!r}, '-o', {str(tmp_path / 'a.mlae')!r}, '--model', {spec!r}, '-q']) == 0\n"
        f"assert main(['decompress', {str(tmp_path / 'a.mlae')!r}, '-o', {str(tmp_path / 'b.wav')!r}, "
        f"'--model', {spec!r}, '-q']) == 0\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'librosa') if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    back, sr = sf.read(tmp_path / "b.wav")
    assert sr == 16000 and back.shape == (24000,)
    assert codec_file.read(tmp_path / "a.mlae").preset == "tiny_test"


def test_cli_export_lite(tiny_model, tmp_path, monkeypatch, capsys):
    from ml_audio_encoder import cli

    monkeypatch.setattr(cli, "load_model", lambda spec=None, preset=None, engine="auto": tiny_model)
    assert cli.main(["export", "--format", "lite", str(tmp_path / "codec")]) == 0
    assert "LiteRT codec" in capsys.readouterr().out
    for suffix in (".encoder.tflite", ".decoder.tflite", ".json"):
        assert (tmp_path / f"codec{suffix}").exists()


def test_an_export_that_codes_otherwise_is_refused_and_removed(tiny_model, exported, tmp_path, monkeypatch):
    """export_lite runs the written codec beside the Keras model on probe signals (silence, silence then noise, a
    tone, a chirp: where float16 exports went wrong before) and removes what it wrote when the codes disagree."""
    from ml_audio_encoder.runtime import export

    for kind in ("float32", "float16"):
        agreement = export.verify_lite(tiny_model, exported[kind]["metadata"][: -len(".json")])
        assert len(agreement) == 4 and min(agreement.values()) >= export.MIN_CODE_AGREEMENT
    rng = np.random.default_rng(0)

    def wrong_codes(self, audio, n_quantizers=None):
        return rng.integers(0, self.codebook_size, (len(audio), self.n_codebooks, audio.shape[1] // self.hop_length))

    monkeypatch.setattr(lite.LiteCodec, "encode_codes", wrong_codes)
    with pytest.raises(RuntimeError, match="of the codes agree with the Keras model"):
        export.export_lite(tiny_model, str(tmp_path / "bad"))
    assert not list(tmp_path.iterdir())
