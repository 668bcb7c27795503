"""SavedModel / TFLite export: the exported graphs, loaded in a fresh process, give the Keras model's results."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import sweep

from ml_audio_encoder import cli
from ml_audio_encoder.runtime.export import read_metadata

LENGTHS = (1013, 640)  # not a whole number of frames (hop 40) / a whole number
N_Q = 2  # fewer than tiny_test's 4 levels


@pytest.fixture(scope="module")
def model():
    import keras

    from ml_audio_encoder import MLAudioEncoder

    keras.utils.set_random_seed(1234)
    m = MLAudioEncoder.from_preset("tiny_test")
    # Random weights drive the decoder's tanh deep into saturation (pre-activations ~25), where float32 rounding
    # differences between graph and eager execution are amplified; a smaller head gain keeps the output in the
    # range of a trained codec.
    g = m.decoder.head.kernel_g
    g.assign(g * 0.05)
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """One export, through the CLI (``--model random:tiny_test`` resolved to the seeded model above)."""
    seen = {}

    def fake_load_model(spec=None, preset=None, engine="auto"):
        seen.update(spec=spec, preset=preset)
        return model

    out = tmp_path_factory.mktemp("export") / "tiny_savedmodel"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "load_model", fake_load_model)
        assert cli.main(["export", "--format", "savedmodel", str(out), "--model", "random:tiny_test", "-q"]) == 0
    assert seen == {"spec": "random:tiny_test", "preset": None}
    return out


RUNNER = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf

    export_dir, inputs, outputs = sys.argv[1:4]
    loaded = tf.saved_model.load(export_dir)
    enc, dec = loaded.signatures["encode"], loaded.signatures["decode"]
    data = dict(np.load(inputs))
    out = {}
    for name, value in data.items():
        if name.startswith("audio"):
            audio = tf.constant(value)
            out["codes_all_" + name] = enc(audio=audio, n_quantizers=tf.constant(0))["codes"].numpy()
            out["codes_nq_" + name] = enc(audio=audio, n_quantizers=tf.constant(%(n_q)d))["codes"].numpy()
            out["fn_codes_all_" + name] = loaded.encode(audio).numpy()  # plain function, default: all levels
            out["fn_codes_nq_" + name] = loaded.encode(audio, %(n_q)d).numpy()
        else:
            out["audio_" + name] = dec(codes=tf.constant(value))["audio"].numpy()
            out["fn_audio_" + name] = loaded.decode(tf.constant(value)).numpy()
    try:
        enc(audio=tf.constant(data["audio0"]), n_quantizers=tf.constant(99))
        out["too_many_levels_rejected"] = np.array(False)
    except tf.errors.InvalidArgumentError:
        out["too_many_levels_rejected"] = np.array(True)
    out["sample_rate"] = loaded.sample_rate.numpy()
    out["hop_length"] = loaded.hop_length.numpy()
    out["fingerprint"] = np.array(loaded.fingerprint.numpy().decode())
    out["config_json"] = np.array(loaded.config_json.numpy().decode())
    out["package_imported"] = np.array("ml_audio_encoder" in sys.modules)
    np.savez(outputs, **out)
    """
) % {"n_q": N_Q}


def test_savedmodel_in_fresh_process_matches_keras(model, exported, tmp_path):
    audio = [
        np.stack([sweep(LENGTHS[0] / 16000, 16000), 0.3 * sweep(LENGTHS[0] / 16000, 16000, f0=500)])[..., None],
        sweep(LENGTHS[1] / 16000, 16000, amp=0.8)[None, :, None],
    ]
    ref_codes = [model.encode(a)[1].numpy() for a in audio]
    ref_codes_nq = [model.encode(a, N_Q)[1].numpy() for a in audio]
    inputs = {f"audio{i}": a for i, a in enumerate(audio)}
    inputs.update({f"codes_all{i}": c for i, c in enumerate(ref_codes)})
    inputs.update({f"codes_nq{i}": c for i, c in enumerate(ref_codes_nq)})
    np.savez(tmp_path / "in.npz", **inputs)

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(exported), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        check=False, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(np.load(tmp_path / "out.npz"))

    assert not out["package_imported"]  # the SavedModel stands alone
    assert out["too_many_levels_rejected"]
    for i, a in enumerate(audio):
        frames = -(-a.shape[1] // model.hop_length)
        assert ref_codes[i].shape == (a.shape[0], model.n_codebooks, frames)
        for prefix in ("", "fn_"):
            assert out[f"{prefix}codes_all_audio{i}"].dtype == np.int32
            np.testing.assert_array_equal(out[f"{prefix}codes_all_audio{i}"], ref_codes[i])
            np.testing.assert_array_equal(out[f"{prefix}codes_nq_audio{i}"], ref_codes_nq[i])
        for kind, codes in (("all", ref_codes[i]), ("nq", ref_codes_nq[i])):
            ref_audio = model.decode(model.quantizer.from_codes(codes)[0]).numpy()
            assert ref_audio.shape == (a.shape[0], frames * model.hop_length, 1)
            for prefix in ("", "fn_"):
                got = out[f"{prefix}audio_codes_{kind}{i}"]
                assert got.shape == ref_audio.shape and got.dtype == np.float32
                np.testing.assert_allclose(got, ref_audio, atol=1e-4, rtol=0)
    # Fewer levels really decode differently (the masking is not a no-op).
    assert np.abs(out["audio_codes_all0"] - out["audio_codes_nq0"]).max() > 1e-3

    assert int(out["sample_rate"]) == 16000 and int(out["hop_length"]) == model.hop_length
    assert str(out["fingerprint"]) == model.fingerprint()
    assert json.loads(str(out["config_json"]))["n_codebooks"] == model.n_codebooks


def test_savedmodel_metadata_asset(model, exported):
    meta = read_metadata(exported)
    assert meta["fingerprint"] == model.fingerprint()
    assert (meta["sample_rate"], meta["hop_length"], meta["n_codebooks"]) == (16000, 40, 4)
    assert meta["preset"] == "tiny_test" and meta["config"]["encoder_rates"] == [2, 4, 5]


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_cli_export_tflite_decoder(model, tmp_path, monkeypatch, capsys):
    tf = pytest.importorskip("tensorflow")
    monkeypatch.setattr(cli, "load_model", lambda spec=None, preset=None, engine="auto": model)
    out = tmp_path / "dec.tflite"
    assert cli.main(["export", "--format", "tflite", str(out), "--frames", "8", "--model", "random:tiny_test"]) == 0
    assert "TFLite decoder for codes (1, 4, 8)" in capsys.readouterr().out

    interpreter = tf.lite.Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    codes = np.random.default_rng(0).integers(0, model.codebook_size, (1, 4, 8)).astype("int32")
    interpreter.set_tensor(inp["index"], codes)
    interpreter.invoke()
    got = interpreter.get_tensor(outp["index"])
    np.testing.assert_allclose(got, model.decode_codes(codes).numpy(), atol=1e-4, rtol=0)


def test_cli_export_bad_format(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["export", "--format", "onnx", "out"])
    assert exc.value.code == 2
