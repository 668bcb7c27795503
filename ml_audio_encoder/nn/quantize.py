"""Residual vector quantization with factorized, L2-normalised codes (Improved RVQGAN, section 3.2).

Two changes over plain VQ-VAE codebooks keep every code in use without k-means init or EMA updates:
* *factorized codes*: the latent is projected to a small ``codebook_dim`` (8) before the nearest-code search and
  projected back afterwards, so the search happens in a space a 1024-entry codebook can actually cover;
* *L2-normalised search*: distances are computed between unit vectors (cosine similarity), which removes the
  magnitude mismatch that leaves codes dead.

Quantizer dropout trains one model for many bitrates: part of each batch is quantized with a random smaller number
of levels, so decoding any prefix of the codes gives usable audio.

Codebooks that start alive (EnCodec's ``core_vq.py`` recipe, kept with DAC's L2-normalized search):
:meth:`ResidualVectorQuantize.init_codebooks` runs k-means on real residuals, level by level in the factorized
space, and :meth:`VectorQuantize.restart_codes` re-seeds codes that went unused from recent residuals. Both run
eagerly on numpy, between training steps (``training/codebooks.py`` schedules them), so the compiled train step
and the saved weights stay exactly as without them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .layers import WNConv1d, register


def _l2_normalize(x, axis=-1, eps=1e-12):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True)), eps)


def _unit_rows(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def kmeans_cosine(x, k, iters=20, seed=0):
    """k-means with the quantizer's own assignment rule: nearest centroid by cosine similarity, centroid = mean of
    its members (un-normalized, as the codebook entries the decoder embeds). Empty clusters are re-seeded from
    random points. ``x`` is ``(N, d)``; returns float32 ``(k, d)``. Deterministic for a given ``seed``."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if len(x) == 0:
        raise ValueError("k-means needs at least one vector")
    centroids = x[rng.choice(len(x), size=k, replace=len(x) < k)].copy()
    for _ in range(iters):
        assign = np.argmax(_unit_rows(x) @ _unit_rows(centroids).T, axis=1)
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, x)
        alive = counts > 0
        centroids[alive] = sums[alive] / counts[alive, None]
        dead = np.flatnonzero(~alive)
        if len(dead):
            centroids[dead] = x[rng.choice(len(x), size=len(dead), replace=len(x) < len(dead))]
    return centroids.astype(np.float32)


def _argmax_last(x):
    """``argmax`` over the last axis as int32.

    Keras' TensorFlow ``argmax`` adds a signed-zero fix built from bitwise ops that the TFLite converter cannot
    lower, which would keep the encoder out of the LiteRT runtime (:mod:`ml_audio_encoder.lite`). A score of -0.0
    against +0.0 is no preference between codes, so the plain op is just as right here.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.argmax(x, axis=-1, output_type=tf.int32)
    return ops.cast(ops.argmax(x, axis=-1), "int32")


@register
class VectorQuantize(keras.layers.Layer):
    """One RVQ level: in-projection, nearest-code search, straight-through estimator, out-projection.

    ``call`` returns ``(z_q, commitment_loss, codebook_loss, codes, z_e)`` with per-example losses of shape ``(B,)``
    so the residual quantizer can mask them per example under quantizer dropout.
    """

    def __init__(self, input_dim, codebook_size, codebook_dim, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = int(codebook_dim)
        self.in_proj = WNConv1d(self.codebook_dim, 1)
        self.out_proj = WNConv1d(self.input_dim, 1)

    def build(self, input_shape):
        # nn.Embedding's N(0, 1) init; only the direction matters for the search, the scale for the decoder.
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.codebook_size, self.codebook_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
        )
        self.in_proj.build(input_shape)
        self.out_proj.build(tuple(input_shape[:-1]) + (self.codebook_dim,))

    def call(self, z):
        z_e = self.in_proj(z)
        codes = self.nearest_codes(z_e)
        z_q = self.embed_codes(codes, z_e.dtype)

        # Stop-gradients on opposite sides: commitment pulls the encoder to the codes, codebook pulls codes to the
        # encoder output.
        commitment_loss = ops.mean(ops.square(z_e - ops.stop_gradient(z_q)), axis=(1, 2))
        codebook_loss = ops.mean(ops.square(z_q - ops.stop_gradient(z_e)), axis=(1, 2))

        # Straight-through estimator: forward uses the code, backward passes the gradient to z_e unchanged.
        z_q = z_e + ops.stop_gradient(z_q - z_e)
        return self.out_proj(z_q), commitment_loss, codebook_loss, codes, z_e

    def nearest_codes(self, z_e):
        """Index of the closest code by cosine similarity for each frame of ``z_e`` ``(B, T, d)``."""
        enc = _l2_normalize(z_e)
        book = _l2_normalize(ops.cast(self.codebook, z_e.dtype))
        # For unit vectors argmin ‖e - c‖² == argmax e·c; the matmul is the only O(T·K·d) work.
        scores = ops.einsum("btd,kd->btk", enc, book)
        return _argmax_last(scores)

    def restart_codes(self, dead, candidates, seed=0, noise=0.01):
        """Replace the codebook rows ``dead`` by randomly drawn rows of ``candidates`` (``(N, codebook_dim)`` recent
        inputs of this level, i.e. projected residuals) plus a little noise, so each lands where data is."""
        dead = np.asarray(dead, dtype=np.int64)
        if dead.size == 0:
            return
        candidates = np.asarray(candidates, dtype=np.float32)
        rng = np.random.default_rng(seed)
        picks = candidates[rng.choice(len(candidates), size=dead.size, replace=len(candidates) < dead.size)]
        scale = noise * (np.std(candidates, axis=0, keepdims=True) + 1e-6)
        book = np.array(keras.ops.convert_to_numpy(self.codebook), dtype=np.float32)
        book[dead] = picks + scale * rng.standard_normal(picks.shape).astype(np.float32)
        self.codebook.assign(book)

    def embed_codes(self, codes, dtype="float32"):
        """Codebook vectors (un-normalised, as DAC) for integer ``codes`` ``(B, T)`` -> ``(B, T, d)``."""
        return ops.take(ops.cast(self.codebook, dtype), codes, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim, codebook_size=self.codebook_size, codebook_dim=self.codebook_dim
        )
        return config


@register
class ResidualVectorQuantize(keras.layers.Layer):
    """A stack of :class:`VectorQuantize` levels, each coding the residual left by the previous ones.

    ``call(z, n_quantizers=None, training=False)`` returns ``(z_q, codes, latents, commitment_loss, codebook_loss)``
    with ``codes`` int32 ``(B, n_q, T)`` (DAC's layout) and ``latents`` the concatenated projected latents
    ``(B, T, n_q · codebook_dim)``.
    """

    def __init__(
        self,
        input_dim=512,
        n_codebooks=9,
        codebook_size=1024,
        codebook_dim=8,
        quantizer_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(codebook_dim, int):
            codebook_dim = [codebook_dim] * n_codebooks
        codebook_dim = [int(d) for d in codebook_dim]
        if len(codebook_dim) != n_codebooks:
            raise ValueError(f"codebook_dim has {len(codebook_dim)} entries for {n_codebooks} codebooks")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError("quantizer_dropout is a fraction of the batch, in [0, 1]")
        self.input_dim = int(input_dim)
        self.n_codebooks = int(n_codebooks)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = codebook_dim
        self.quantizer_dropout = float(quantizer_dropout)
        self.seed = seed
        self.quantizers = [
            VectorQuantize(self.input_dim, self.codebook_size, d, name=f"vq_{i}") for i, d in enumerate(codebook_dim)
        ]
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        for q in self.quantizers:
            q.build(input_shape)

    def _levels(self, n_quantizers):
        if n_quantizers is None:
            return self.n_codebooks
        n = int(n_quantizers)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_quantizers must be in 1..{self.n_codebooks}, got {n_quantizers}")
        return n

    def _training_depths(self, z):
        """Per-example number of active levels under quantizer dropout (DAC's scheme).

        The first ``quantizer_dropout · B`` examples use a random depth in ``1..n_codebooks``; the rest use all
        levels. Only those first examples see the bitrates the model will be asked for at inference. Written for a
        batch size known only at run time (``tf.data`` / ``PyDataset`` batches under ``tf.function``).
        """
        ones = ops.ones_like(z[:, 0, 0], dtype="float32")
        full = ops.cast(ones, "int32") * (self.n_codebooks + 1)
        if self.quantizer_dropout <= 0.0:
            return full
        uniform = keras.random.uniform(ops.shape(ones), seed=self.seed_generator)
        random_depth = ops.minimum(ops.cast(ops.floor(uniform * self.n_codebooks), "int32") + 1, self.n_codebooks)
        position = ops.cumsum(ones) - 1.0
        n_dropout = ops.floor(ops.sum(ones) * self.quantizer_dropout)
        return ops.where(position < n_dropout, random_depth, full)

    def call(self, z, n_quantizers=None, training=False):
        if training:
            depths = self._training_depths(z)
            levels = self.n_codebooks
        else:
            depths = None
            levels = self._levels(n_quantizers)

        z_q = ops.zeros_like(z)
        residual = z
        commitment_loss = ops.zeros((), dtype=z.dtype)
        codebook_loss = ops.zeros((), dtype=z.dtype)
        codes, latents = [], []
        for i in range(levels):
            z_q_i, commit_i, book_i, codes_i, z_e_i = self.quantizers[i](residual)
            if depths is not None:
                mask = ops.cast(depths > i, z.dtype)
                z_q = z_q + z_q_i * mask[:, None, None]
                commit_i, book_i = commit_i * mask, book_i * mask
            else:
                z_q = z_q + z_q_i
            residual = residual - z_q_i
            commitment_loss = commitment_loss + ops.mean(commit_i)
            codebook_loss = codebook_loss + ops.mean(book_i)
            codes.append(codes_i)
            latents.append(z_e_i)
        return z_q, ops.stack(codes, axis=1), ops.concatenate(latents, axis=-1), commitment_loss, codebook_loss

    def level_inputs(self, z):
        """What each level's nearest-code search sees for latents ``z`` ``(B, T, input_dim)``, all levels in use:
        a list of numpy ``(B · T, codebook_dim)`` arrays (the projected residuals), for codebook maintenance."""
        residual = ops.convert_to_tensor(z)
        inputs = []
        for q in self.quantizers:
            z_q_i, _, _, _, z_e = q(residual)
            inputs.append(np.asarray(ops.convert_to_numpy(z_e)).reshape(-1, q.codebook_dim))
            residual = residual - z_q_i
        return inputs

    def init_codebooks(self, z, iters=20, seed=0):
        """k-means initialization of every level from latents ``z`` ``(B, T, input_dim)``, coarsest first: each
        level is fit on the residual that the levels above it (already initialized) leave.

        Use a few thousand frames or more (several times ``codebook_size``); returns the fraction of codes in use
        per level on ``z`` afterwards.
        """
        residual = ops.convert_to_tensor(z)
        used = []
        for i, q in enumerate(self.quantizers):
            z_e = np.asarray(ops.convert_to_numpy(q.in_proj(residual))).reshape(-1, q.codebook_dim)
            q.codebook.assign(kmeans_cosine(z_e, q.codebook_size, iters=iters, seed=seed + i))
            z_q_i, _, _, codes, _ = q(residual)
            used.append(len(np.unique(ops.convert_to_numpy(codes))) / q.codebook_size)
            residual = residual - z_q_i
        return used

    def from_codes(self, codes):
        """Rebuild ``(z_q, latents, codes)`` from integer codes ``(B, n_q, T)`` (any ``n_q <= n_codebooks``)."""
        n_q = codes.shape[1]
        self._levels(n_q)
        z_q, latents = None, []
        for i in range(n_q):
            z_p = self.quantizers[i].embed_codes(codes[:, i, :])
            latents.append(z_p)
            z_q_i = self.quantizers[i].out_proj(z_p)
            z_q = z_q_i if z_q is None else z_q + z_q_i
        return z_q, ops.concatenate(latents, axis=-1), codes

    def from_latents(self, latents):
        """Quantize projected latents ``(B, T, sum(codebook_dim[:n]))`` -> ``(z_q, latents, codes)``."""
        bounds = [0]
        for d in self.codebook_dim:
            bounds.append(bounds[-1] + d)
        n_q = max(i for i, b in enumerate(bounds) if b <= latents.shape[-1])
        z_q, z_ps, codes = None, [], []
        for i in range(n_q):
            z_e = latents[..., bounds[i] : bounds[i + 1]]
            c = self.quantizers[i].nearest_codes(z_e)
            z_p = self.quantizers[i].embed_codes(c, latents.dtype)
            z_q_i = self.quantizers[i].out_proj(z_p)
            z_q = z_q_i if z_q is None else z_q + z_q_i
            z_ps.append(z_p)
            codes.append(c)
        return z_q, ops.concatenate(z_ps, axis=-1), ops.stack(codes, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            n_codebooks=self.n_codebooks,
            codebook_size=self.codebook_size,
            codebook_dim=self.codebook_dim,
            quantizer_dropout=self.quantizer_dropout,
            seed=self.seed,
        )
        return config
