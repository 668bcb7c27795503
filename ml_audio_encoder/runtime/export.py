"""Export a trained codec for serving without this package: a TensorFlow SavedModel (and a TFLite decoder).

SavedModel (:func:`export_savedmodel`)
    Two serving signatures, both for any batch size and any length:

    * ``encode``: ``audio`` float32 ``(batch, samples, 1)`` and ``n_quantizers`` int32 scalar (``0`` = all levels)
      -> ``codes`` int32 ``(batch, n_q, ceil(samples / hop_length))``;
    * ``decode``: ``codes`` int32 ``(batch, n_q, frames)`` with any ``1 <= n_q <= n_codebooks``
      -> ``audio`` float32 ``(batch, frames · hop_length, 1)``.

    The loaded object also has plain functions: ``loaded.encode(audio)`` (all levels),
    ``loaded.encode(audio, n_quantizers)`` and ``loaded.decode(codes)``, returning tensors, plus the scalars
    ``loaded.sample_rate``, ``loaded.hop_length``, ``loaded.n_codebooks``, ``loaded.codebook_size`` and the
    strings ``loaded.fingerprint``, ``loaded.preset`` and ``loaded.config_json`` (``tf.Variable``s).
    The same facts are in ``assets/mlae_model.json`` (read it with :func:`read_metadata`).

    Encoding runs all quantizer levels and keeps the first ``n_quantizers`` (residual quantization makes the first
    levels independent of the later ones, so the codes equal ``model.encode(audio, n)``). Decoding pads the codes to
    ``n_codebooks`` levels and masks the missing levels' contributions to zero, so one graph serves every level
    count and the audio equals ``model.decode(model.quantizer.from_codes(codes)[0])``.
    Decoded audio is whole frames long; trim it to the input length yourself.

TFLite (:func:`export_tflite`)
    The decoder only, for a fixed ``(1, n_quantizers, frames)`` codes input. It converts with the stock
    converter (builtin ops only, no Flex/select-TF ops); see the function's docstring for what was measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from .lite import available as lite_available
from .lite import lite_paths

if TYPE_CHECKING:
    from ..models.codec import MLAudioEncoder

METADATA_ASSET = "mlae_model.json"
EXPORT_FORMAT_VERSION = 1


def _metadata(model) -> dict:
    config = model.get_config()
    return {
        "format": "ml_audio_encoder.savedmodel",
        "format_version": EXPORT_FORMAT_VERSION,
        "preset": model.preset,
        "sample_rate": int(model.sample_rate),
        "hop_length": int(model.hop_length),
        "n_codebooks": int(model.n_codebooks),
        "codebook_size": int(model.codebook_size),
        "fingerprint": model.fingerprint(),
        "config": {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")},
    }


def _require_tensorflow_backend():
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"SavedModel/TFLite export needs KERAS_BACKEND=tensorflow (this process uses {keras.backend.backend()!r})"
        )


def _decode_all_levels(model, codes):
    """``codes`` ``(B, n_q, T)`` with a run-time ``n_q`` -> audio, summing only the first ``n_q`` levels."""
    import tensorflow as tf

    rvq = model.quantizer
    n_cb = rvq.n_codebooks
    codes = tf.convert_to_tensor(codes, tf.int32)
    n_q = tf.shape(codes)[1]
    checks = [
        tf.debugging.assert_greater_equal(n_q, 1, message="codes need at least one quantizer level"),
        tf.debugging.assert_less_equal(n_q, n_cb, message=f"codes have more than {n_cb} quantizer levels"),
        tf.debugging.assert_greater_equal(tf.reduce_min(codes), 0, message="negative code"),
        tf.debugging.assert_less(tf.reduce_max(codes), rvq.codebook_size, message="code out of codebook range"),
    ]
    with tf.control_dependencies(checks):
        padded = tf.pad(codes, [[0, 0], [0, n_cb - n_q], [0, 0]])
    return _decode_first_levels(model, padded, n_q)


def _decode_first_levels(model, codes, n_q):
    """``codes`` ``(B, n_codebooks, T)`` -> audio from the first ``n_q`` (run-time int32) levels only."""
    import tensorflow as tf

    rvq = model.quantizer
    z_q = None
    for i in range(rvq.n_codebooks):
        z_q_i = rvq.quantizers[i].out_proj(rvq.quantizers[i].embed_codes(codes[:, i, :]))
        if i:  # level 0 is always present; later ones count only below n_q (x·0 keeps the sum bit-exact)
            z_q_i = z_q_i * tf.cast(i < n_q, z_q_i.dtype)
        z_q = z_q_i if z_q is None else z_q + z_q_i
    return model.decode(z_q)


def _encode_codes(model, audio, n_quantizers):
    """Codes of all levels, cut to the first ``n_quantizers`` (a run-time int32 scalar; ``<= 0`` means all)."""
    import tensorflow as tf

    n_cb = model.n_codebooks
    n_q = tf.where(n_quantizers <= 0, tf.constant(n_cb, tf.int32), tf.cast(n_quantizers, tf.int32))
    check = tf.debugging.assert_less_equal(n_q, n_cb, message=f"n_quantizers must be at most {n_cb}")
    with tf.control_dependencies([check]):
        codes = model.encode(audio, training=False)[1]
        return tf.identity(codes[:, :n_q, :])


def _build_module(model, metadata):
    import tensorflow as tf

    audio_spec = tf.TensorSpec((None, None, 1), tf.float32, name="audio")
    n_q_spec = tf.TensorSpec((), tf.int32, name="n_quantizers")
    codes_spec = tf.TensorSpec((None, None, None), tf.int32, name="codes")

    module = tf.Module(name="mlae_codec")
    module.weights = [getattr(v, "value", v) for v in model.variables]  # the tf.Variables the graphs capture
    module.sample_rate = tf.Variable(metadata["sample_rate"], dtype=tf.int32, trainable=False, name="sample_rate")
    module.hop_length = tf.Variable(metadata["hop_length"], dtype=tf.int32, trainable=False, name="hop_length")
    module.n_codebooks = tf.Variable(metadata["n_codebooks"], dtype=tf.int32, trainable=False, name="n_codebooks")
    module.codebook_size = tf.Variable(metadata["codebook_size"], dtype=tf.int32, trainable=False,
                                       name="codebook_size")
    module.fingerprint = tf.Variable(metadata["fingerprint"], dtype=tf.string, trainable=False, name="fingerprint")
    module.preset = tf.Variable(metadata["preset"], dtype=tf.string, trainable=False, name="preset")
    module.config_json = tf.Variable(json.dumps(metadata["config"], sort_keys=True), dtype=tf.string,
                                     trainable=False, name="config_json")

    # Nothing is traced here: tf.saved_model.save traces under its own save context and would not reuse earlier
    # traces. The signature wrappers call the plain functions, so each model graph is traced once.
    @tf.function(input_signature=[audio_spec, n_q_spec])
    def encode(audio, n_quantizers=0):
        return _encode_codes(model, audio, n_quantizers)

    @tf.function(input_signature=[codes_spec])
    def decode(codes):
        return _decode_all_levels(model, codes)

    @tf.function(input_signature=[audio_spec, n_q_spec])
    def encode_signature(audio, n_quantizers):
        return {"codes": encode(audio, n_quantizers)}

    @tf.function(input_signature=[codes_spec])
    def decode_signature(codes):
        return {"audio": decode(codes)}

    module.encode, module.decode = encode, decode
    signatures = {"encode": encode_signature, "decode": decode_signature}
    return module, signatures


def export_savedmodel(model: MLAudioEncoder, out_dir: str | os.PathLike) -> str:
    """Write ``model`` as a TensorFlow SavedModel with ``encode``/``decode`` signatures to ``out_dir``.

    Returns ``out_dir``. Loads back with ``tf.saved_model.load(out_dir)`` in any TensorFlow process (this package
    and Keras are not needed there). See the module docstring for the signatures.
    """
    import tensorflow as tf

    _require_tensorflow_backend()
    out_dir = os.fspath(out_dir)
    metadata = _metadata(model)
    with tempfile.TemporaryDirectory() as tmp:
        meta_path = os.path.join(tmp, METADATA_ASSET)
        with open(meta_path, "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
        module, signatures = _build_module(model, metadata)
        module.metadata_file = tf.saved_model.Asset(meta_path)  # copied into out_dir/assets/
        tf.saved_model.save(module, out_dir, signatures=signatures)
    return out_dir


def read_metadata(savedmodel_dir: str | os.PathLike) -> dict[str, Any]:
    """The model facts an exported SavedModel carries (``assets/mlae_model.json``), without loading TensorFlow."""
    with open(os.path.join(os.fspath(savedmodel_dir), "assets", METADATA_ASSET)) as f:
        return json.load(f)


def export_tflite(model: MLAudioEncoder, out_path: str | os.PathLike, frames: int | None = None,
                  n_quantizers: int | None = None) -> str:
    """Write the decoder as a TFLite flatbuffer for codes int32 ``(1, n_quantizers, frames)`` -> audio float32
    ``(1, frames · hop_length, 1)``. Returns ``out_path``.

    Shapes are fixed (default: all levels, one second of frames); decode longer input in blocks of ``frames``
    with context, as :mod:`ml_audio_encoder.runtime.compress` does for chunks. Raises ``RuntimeError`` if the converter
    fails.

    What was checked (TF 2.21, float32, no quantization, 2-core CPU shared with a training job):

    * ``tiny_test``: converts in ~6 s to a 141 KB flatbuffer; matches ``model.decode_codes`` within 1e-4
      (``tests/test_export.py``).
    * ``small_24khz`` (random weights), 20 frames: converts in ~31 s to 26.4 MB (the decoder's float32 weights;
      weight norm is folded into constant kernels); one call takes ~0.2 s. The largest difference from Keras was
      1.3e-3 with random weights, whose tanh output is saturated and so amplifies float32 reordering.
    * Not tried: a dynamic number of frames, int8/float16 quantization, the encoder. ``tf.lite.Interpreter`` is
      deprecated in favour of ``ai_edge_litert``, which reads the same files.
    """
    import tensorflow as tf

    _require_tensorflow_backend()
    frames = round(model.frame_rate) if frames is None else int(frames)
    n_q = model.n_codebooks if n_quantizers is None else model.quantizer._levels(n_quantizers)
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")

    module = tf.Module(name="mlae_decoder")
    module.weights = [getattr(v, "value", v) for v in model.variables]

    @tf.function(input_signature=[tf.TensorSpec((1, n_q, frames), tf.int32, name="codes")])
    def decode(codes):
        return {"audio": model.decode_codes(codes)}

    return _write_tflite(decode.get_concrete_function(), module, out_path, "decoder")


def _write_tflite(concrete, module, out_path, what, float16=False):
    """Convert one traced function with the stock converter (builtin ops only) and write the flatbuffer."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if float16:  # weights stored as float16, computed in float32 (the interpreter dequantizes once at load)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises several unrelated types (ConverterError, RuntimeError, ...)
        raise RuntimeError(f"TFLite conversion of the {what} failed: {' '.join(str(exc).split())[:2000]}") from exc
    out_path = os.fspath(out_path)
    parent = os.path.dirname(out_path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(flatbuffer)
    return out_path


def _lite_window_seconds(model) -> float:
    """Window length for the LiteRT runtime. XNNPACK plans memory per frame: ~3 MB for the DAC-style convs at
    audio rates (1.5 s windows keep ``small_24khz`` near 400 MB), far less for a frame-rate model, whose 29 context
    frames each side would cost more compute than a longer window's memory."""
    frame_rate = getattr(model, "encoder_type", "conv") != "conv" and getattr(model, "decoder_type", "conv") != "conv"
    return 5.0 if frame_rate else 1.5


# The exported codec must code like the Keras model: at least this share of all codes of each probe signal agrees
# (float16 weights flip a few near-ties: 94-100% per level on fast_24khz), and the decoder's output is finite.
MIN_CODE_AGREEMENT = 0.9


def _probe_signals(sample_rate: int, hop: int, seconds: float = 2.0) -> dict[str, np.ndarray]:
    """Signals on which an export has gone wrong before, ``(1, samples, 1)`` float32, whole frames: digital
    silence (a float16 power floor of 0 gave NaN features), silence then noise, and a pure tone and a chirp (a
    float16 DFT matrix raised their spectral floor by ~30 dB)."""
    n = int(seconds * sample_rate) // hop * hop
    t = np.arange(n) / sample_rate
    half = n // 2
    noise = np.random.default_rng(0).standard_normal(n - half) * 0.1
    probes = {"digital silence": np.zeros(n), "silence then noise": np.concatenate([np.zeros(half), noise]),
              "a 440 Hz tone": 0.1 * np.sin(2 * np.pi * 440.0 * t),
              "a chirp": 0.1 * np.sin(2 * np.pi * (100.0 + 0.2 * sample_rate / seconds * t) * t)}
    return {name: x.astype(np.float32)[None, :, None] for name, x in probes.items()}


def verify_lite(model: MLAudioEncoder, prefix: str | os.PathLike,
                min_agreement: float = MIN_CODE_AGREEMENT) -> dict[str, float]:
    """Run the LiteRT codec at ``prefix`` beside ``model`` on probe signals; returns each probe's share of codes
    (all levels) that agree. Raises ``RuntimeError`` naming the probe where the exported encoder codes otherwise
    (less than ``min_agreement``) or the exported decoder gives non-finite audio."""
    import keras

    from .lite import LiteCodec

    codec = LiteCodec.load(prefix)
    agreement = {}
    for name, x in _probe_signals(model.sample_rate, model.hop_length).items():
        want = keras.ops.convert_to_numpy(model.encode_codes(x))
        agreement[name] = float((codec.encode_codes(x) == want).mean())
        if agreement[name] < min_agreement:
            raise RuntimeError(f"LiteRT export {os.fspath(prefix)}: on {name} only {agreement[name]:.0%} of the codes "
                               f"agree with the Keras model's (at least {min_agreement:.0%} expected)")
        if not np.isfinite(codec.decode_codes(want)).all():
            raise RuntimeError(f"LiteRT export {os.fspath(prefix)}: the decoder gives non-finite audio on {name}")
    return agreement


def export_lite(model: MLAudioEncoder, prefix: str | os.PathLike, float16: bool = True,
                verify: bool = True) -> dict[str, str]:
    """Write the whole codec for the TensorFlow-free LiteRT runtime (:mod:`ml_audio_encoder.runtime.lite`).

    Files (see :func:`lite_paths`): ``PREFIX.encoder.tflite`` (audio float32 ``(1, samples, 1)``, samples a
    multiple of ``hop_length``, -> codes int32 ``(1, n_codebooks, frames)``), ``PREFIX.decoder.tflite`` (codes
    int32 ``(1, n_codebooks, frames)`` and ``n_quantizers`` int32 scalar -> audio ``(1, frames · hop, 1)``, levels
    from ``n_quantizers`` on ignored) and ``PREFIX.json`` (the model facts, the Keras weights' fingerprint and the
    receptive field, so chunking matches the Keras model's). The length is dynamic: the runtime resizes the input
    per chunk. With ``float16`` (default) the weights are stored in half precision: half the size, and the
    float32 compute keeps the output within float16 rounding of the Keras model. With ``verify`` (default) the
    written codec is run beside the Keras model on probe signals (:func:`verify_lite`); on a mismatch the files
    are removed and ``RuntimeError`` says on which probe (skipped where the LiteRT interpreter is not installed).
    Returns the paths.
    """
    import tensorflow as tf

    from ..nn import spectral

    _require_tensorflow_backend()
    paths = lite_paths(prefix)
    module = tf.Module(name="mlae_lite")
    module.weights = [getattr(v, "value", v) for v in model.variables]
    n_cb = model.n_codebooks

    # No model.preprocess here: its run-time padding hides the channel count from the converter, which then
    # cannot lower the convolutions. The runtime feeds whole frames instead.
    @tf.function(input_signature=[tf.TensorSpec((1, None, 1), tf.float32, name="audio")])
    def encode(audio):
        return {"codes": model.quantizer(model.encoder(audio), training=False)[1]}

    @tf.function(input_signature=[tf.TensorSpec((1, n_cb, None), tf.int32, name="codes"),
                                  tf.TensorSpec((), tf.int32, name="n_quantizers")])
    def decode(codes, n_quantizers):
        return {"audio": _decode_first_levels(model, codes, n_quantizers)}

    # traced with the DFT analysis matrix split in two float16-exact parts (nn/spectral.py says why)
    with spectral.float16_exact_analysis() if float16 else contextlib.nullcontext():
        encode_fn, decode_fn = encode.get_concrete_function(), decode.get_concrete_function()
    _write_tflite(encode_fn, module, paths["encoder"], "encoder", float16)
    _write_tflite(decode_fn, module, paths["decoder"], "decoder", float16)
    metadata = {**_metadata(model), "format": "ml_audio_encoder.lite", "float16": bool(float16),
                "context_frames": int(model.context_frames), "receptive_field": int(model.receptive_field),
                "frame_period": int(model.frame_period),
                "win_duration": _lite_window_seconds(model)}
    with open(paths["metadata"], "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
    if verify and lite_available():
        try:
            verify_lite(model, prefix)
        except Exception:
            for path in paths.values():
                os.remove(path)
            raise
    return paths
