import numpy as np
import pytest
import tensorflow as tf

from ml_audio_encoder.nn.quantize import ResidualVectorQuantize, VectorQuantize


def _rvq(**kw):
    rvq = ResidualVectorQuantize(input_dim=16, n_codebooks=4, codebook_size=32, codebook_dim=4, **kw)
    rvq.build((None, None, 16))
    return rvq


def test_vq_picks_nearest_code_by_cosine():
    vq = VectorQuantize(8, 16, 4)
    vq.build((None, None, 8))
    z_e = np.random.randn(2, 5, 4).astype("float32")
    codes = np.asarray(vq.nearest_codes(z_e))
    book = np.asarray(vq.codebook)
    cos = (z_e / np.linalg.norm(z_e, axis=-1, keepdims=True)) @ (book / np.linalg.norm(book, axis=-1, keepdims=True)).T
    np.testing.assert_array_equal(codes, cos.argmax(-1))


def test_rvq_shapes_and_from_codes_round_trip():
    rvq = _rvq()
    z = np.random.randn(3, 7, 16).astype("float32")
    z_q, codes, latents, commit, book = rvq(z)
    assert z_q.shape == (3, 7, 16) and codes.shape == (3, 4, 7) and latents.shape == (3, 7, 16)
    assert codes.dtype == "int32" and commit.shape == () and book.shape == ()
    z_q2, _, codes2 = rvq.from_codes(codes)
    np.testing.assert_allclose(np.asarray(z_q2), np.asarray(z_q), rtol=1e-4, atol=1e-5)
    _, _, codes3 = rvq.from_latents(latents)
    np.testing.assert_array_equal(np.asarray(codes3), np.asarray(codes))


def test_residual_shrinks_with_more_levels_and_n_quantizers_prefix():
    rvq = _rvq()
    z = np.random.randn(4, 20, 16).astype("float32")
    full = rvq(z)[1]
    for n in (1, 2, 3):
        z_q, codes = rvq(z, n_quantizers=n)[:2]
        assert codes.shape[1] == n
        np.testing.assert_array_equal(np.asarray(codes), np.asarray(full)[:, :n])
    with pytest.raises(ValueError):
        rvq(z, n_quantizers=5)


def test_quantizer_dropout_only_in_training():
    rvq = _rvq(quantizer_dropout=1.0, seed=3)
    z = np.random.randn(8, 6, 16).astype("float32")
    a = np.asarray(rvq(z, training=False)[0])
    b = np.asarray(rvq(z, training=False)[0])
    np.testing.assert_array_equal(a, b)  # inference is deterministic and uses every level
    trained = np.asarray(rvq(z, training=True)[0])
    # with dropout on the whole batch, some examples use fewer levels than all, so they differ from inference
    assert np.abs(trained - a).max() > 1e-6


def test_straight_through_gradient_reaches_the_input():
    rvq = _rvq()
    z = tf.Variable(np.random.randn(2, 5, 16).astype("float32"))
    with tf.GradientTape() as tape:
        z_q, _, _, commit, book = rvq(z)
        loss = tf.reduce_sum(z_q) + commit + book
    grad = tape.gradient(loss, z)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0


def test_codebook_dim_per_level():
    rvq = ResidualVectorQuantize(input_dim=16, n_codebooks=3, codebook_size=8, codebook_dim=[2, 4, 8])
    rvq.build((None, None, 16))
    z_q, codes, latents, _, _ = rvq(np.random.randn(1, 3, 16).astype("float32"))
    assert latents.shape == (1, 3, 14)
    with pytest.raises(ValueError):
        ResidualVectorQuantize(input_dim=16, n_codebooks=3, codebook_dim=[2, 4])


def test_quantizer_dropout_with_batch_size_known_only_at_run_time():
    # tf.data / PyDataset batches reach train_step with shape (None, T, C) under tf.function.
    import tensorflow as tf

    rvq = ResidualVectorQuantize(input_dim=16, n_codebooks=4, codebook_size=32, codebook_dim=4,
                                 quantizer_dropout=0.5)
    rvq.build((None, None, 16))
    fn = tf.function(lambda z: rvq(z, training=True), input_signature=[tf.TensorSpec((None, None, 16))])
    z = np.random.RandomState(0).randn(8, 5, 16).astype("float32")
    z_q, codes, latents, commit, book = fn(z)
    assert z_q.shape == (8, 5, 16) and codes.shape == (8, 4, 5)
    # The last half of the batch always uses every level, so its output equals the full-depth inference output.
    full = rvq(z, training=False)[0]
    np.testing.assert_allclose(np.asarray(z_q)[4:], np.asarray(full)[4:], atol=1e-5)
