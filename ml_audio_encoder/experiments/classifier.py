"""Small classifiers on codec codes (and a log-mel baseline), plus the data helpers they need.

:class:`CodeVoiceClassifier` reads the first ``n_levels`` RVQ levels of an utterance, int32 codes
``(batch, n_levels, frames)`` as :meth:`MLAudioEncoder.encode` returns them. Each level has its own embedding table
and its own small Transformer encoder (stored as one set of layers with a leading level axis, so the eight levels
run as one batched op); each level's frames are mean-pooled (padding masked), and a learned query
then weighs the ``n_levels`` pooled vectors (softmax over levels) before a linear classifier. The across-level
weights are the interesting by-product: :meth:`CodeVoiceClassifier.level_attention` returns them,
``(batch, n_levels)``, summing to 1 over levels.

Variable lengths: pad codes with :data:`PAD_CODE` (-1) on the right; padded frames are masked out of attention and
pooling. :class:`MelVoiceClassifier` (the baseline: the same Transformer on log-mel frames) marks padding with
:data:`MEL_PAD` in every mel bin.

The helpers at the bottom pad code / mel sequences, compute log-mel features with
:func:`ml_audio_encoder.nn.spectral.mel_spectrogram`, and split clips into speaker-disjoint folds
(:func:`speaker_folds`): with a handful of speakers, a split that lets one speaker's clips land on both sides
measures speaker recognition, not the label.

Backend-neutral (``keras.ops`` only).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

__all__ = [
    "PAD_CODE",
    "MEL_PAD",
    "GroupedLayerNorm",
    "GroupedDense",
    "TransformerBlock",
    "SequenceEncoder",
    "LevelAttentionPooling",
    "CodeVoiceClassifier",
    "MelVoiceClassifier",
    "pad_codes",
    "pad_frames",
    "log_mel",
    "pooled_stats",
    "speaker_folds",
]

register = keras.saving.register_keras_serializable(package="ml_audio_encoder")

PAD_CODE = -1  # code value of padded frames
MEL_PAD = -1000.0  # feature value of padded mel frames (standardized log-mel never gets near it)


# -- layers -----------------------------------------------------------------------------------------------------
# Every layer below holds ``groups`` independent copies of its weights (a leading ``groups`` axis) and applies copy
# ``g`` to group ``g`` of a ``(B, groups, T, D)`` input. For the code classifier the groups are the RVQ levels:
# mathematically that is one separate embedding table + Transformer per level, but it runs as one batched op per
# step instead of ``n_levels`` small ones (8x fewer ops to trace and dispatch on a CPU).
def _glorot(fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit)


@register
class GroupedLayerNorm(keras.layers.Layer):
    """LayerNorm over the last axis of ``(B, groups, T, D)`` with a scale and offset per group."""

    def __init__(self, groups=1, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.epsilon = int(groups), float(epsilon)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(self.groups, dim), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.groups, dim), initializer="zeros", name="beta")
        self.built = True

    def call(self, x):
        mean = ops.mean(x, axis=-1, keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
        x = (x - mean) * ops.rsqrt(var + self.epsilon)
        return x * self.gamma[None, :, None, :] + self.beta[None, :, None, :]

    def get_config(self):
        config = super().get_config()
        config.update(groups=self.groups, epsilon=self.epsilon)
        return config


@register
class GroupedDense(keras.layers.Layer):
    """Dense layer per group: ``(B, groups, T, D_in)`` -> ``(B, groups, T, units)``."""

    def __init__(self, groups=1, units=32, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.units = int(groups), int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(self.groups, dim, self.units), initializer=_glorot(dim, self.units),
                                      name="kernel")
        self.bias = self.add_weight(shape=(self.groups, self.units), initializer="zeros", name="bias")
        self.built = True

    def call(self, x):
        return self.activation(ops.einsum("bgtd,gde->bgte", x, self.kernel) + self.bias[None, :, None, :])

    def get_config(self):
        config = super().get_config()
        config.update(groups=self.groups, units=self.units, activation=keras.activations.serialize(self.activation))
        return config


@register
class TransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm Transformer encoder block per group: ``x + MHA(LN(x))``, then ``x + FFN(LN(x))``.

    ``call(x, frame_mask=None)``: ``x`` is ``(B, groups, T, d_model)``; ``frame_mask`` bool ``(B, groups, T)``,
    True on real frames. Masked frames are never attended to (their own outputs are meaningless and must be
    ignored downstream). Multi-head scaled dot-product attention with ``num_heads`` heads, GELU feed-forward;
    dropout on both residual branches (none on the attention weights: cheaper on a CPU).
    """

    def __init__(self, groups=1, d_model=32, num_heads=2, ff_dim=64, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of num_heads={num_heads}")
        self.groups, self.d_model, self.num_heads, self.ff_dim = int(groups), int(d_model), int(num_heads), int(ff_dim)
        self.dropout = dropout
        self.norm1 = GroupedLayerNorm(self.groups, name="norm1")
        self.qkv = GroupedDense(self.groups, 3 * self.d_model, name="qkv")
        self.out = GroupedDense(self.groups, self.d_model, name="out")
        self.norm2 = GroupedLayerNorm(self.groups, name="norm2")
        self.ff1 = GroupedDense(self.groups, self.ff_dim, activation="gelu", name="ff1")
        self.ff2 = GroupedDense(self.groups, self.d_model, name="ff2")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        for layer in (self.norm1, self.qkv, self.out, self.norm2, self.ff1):
            layer.build(input_shape)
        self.ff2.build(input_shape[:-1] + (self.ff_dim,))
        self.built = True

    def call(self, x, frame_mask=None, training=False):
        head_dim = self.d_model // self.num_heads
        qkv = self.qkv(self.norm1(x))  # (B, G, T, 3 D)
        shape = ops.shape(qkv)
        qkv = ops.reshape(qkv, (shape[0], shape[1], shape[2], 3, self.num_heads, head_dim))
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]  # (B, G, T, H, hd)
        scores = ops.einsum("bgqhd,bgkhd->bghqk", q * (1.0 / math.sqrt(head_dim)), k)
        if frame_mask is not None:  # keys that are padding get no weight
            scores = scores + (1.0 - ops.cast(frame_mask, scores.dtype))[:, :, None, None, :] * -1e9
        weights = ops.softmax(scores, axis=-1)
        h = ops.einsum("bghqk,bgkhd->bgqhd", weights, v)
        h = self.out(ops.reshape(h, (shape[0], shape[1], shape[2], self.d_model)))
        x = x + self.drop(h, training=training)
        h = self.ff2(self.ff1(self.norm2(x)))
        return x + self.drop(h, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(groups=self.groups, d_model=self.d_model, num_heads=self.num_heads, ff_dim=self.ff_dim,
                      dropout=self.dropout)
        return config


@register
class SequenceEncoder(keras.layers.Layer):
    """Per group: (optional) masked average of every ``pool`` frames, learned positional embedding, ``num_blocks``
    :class:`TransformerBlock`, LayerNorm, masked temporal mean.

    ``call(x, frame_mask)``: ``x`` ``(B, groups, T, d_model)`` (already embedded), ``frame_mask`` bool
    ``(B, groups, T)`` -> ``(B, groups, d_model)``. ``max_frames`` bounds ``T`` (input frames, before pooling);
    ``positional=False`` drops the positional embedding (then ``max_frames`` is no limit). ``pool`` trades time
    resolution for speed: attention cost is quadratic in frames (75 frames/s codes with ``pool=3`` run at 25/s).
    """

    def __init__(self, groups=1, d_model=32, num_heads=2, ff_dim=64, num_blocks=1, max_frames=256, positional=True,
                 dropout=0.1, pool=1, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.d_model, self.num_heads, self.ff_dim = int(groups), int(d_model), int(num_heads), int(ff_dim)
        self.num_blocks, self.max_frames, self.positional, self.dropout = (
            int(num_blocks), int(max_frames), bool(positional), dropout
        )
        self.pool = int(pool)
        if self.pool < 1:
            raise ValueError(f"pool={pool} must be >= 1")
        self.blocks = [
            TransformerBlock(self.groups, self.d_model, self.num_heads, self.ff_dim, dropout, name=f"block{i}")
            for i in range(self.num_blocks)
        ]
        self.norm = GroupedLayerNorm(self.groups, name="norm")

    def build(self, input_shape):
        if self.positional:
            self.position = self.add_weight(
                shape=(self.groups, -(-self.max_frames // self.pool), self.d_model),
                initializer=keras.initializers.RandomUniform(-0.05, 0.05), name="position",
            )
        for block in self.blocks:
            block.build(input_shape)
        self.norm.build(input_shape)
        self.built = True

    def call(self, x, frame_mask, training=False):
        frames = x.shape[2]
        if self.positional and frames is not None and frames > self.max_frames:
            raise ValueError(f"{frames} frames is more than max_frames={self.max_frames}")
        if self.pool > 1:
            x, frame_mask = self._pool(x, frame_mask)
        if self.positional:
            x = x + self.position[None, :, : ops.shape(x)[2], :]
        for block in self.blocks:
            x = block(x, frame_mask=frame_mask, training=training)
        x = self.norm(x)
        weights = ops.expand_dims(ops.cast(frame_mask, x.dtype), -1)
        return ops.sum(x * weights, axis=2) / ops.maximum(ops.sum(weights, axis=2), 1.0)

    def _pool(self, x, frame_mask):
        """Masked mean of each run of ``pool`` frames; a pooled frame is real if any of its frames is."""
        shape = ops.shape(x)
        frames = shape[2]
        pad = (-frames) % self.pool
        x = ops.pad(x, [(0, 0), (0, 0), (0, pad), (0, 0)])
        m = ops.pad(ops.cast(frame_mask, x.dtype), [(0, 0), (0, 0), (0, pad)])
        pooled_frames = (frames + pad) // self.pool
        x = ops.reshape(x, (shape[0], shape[1], pooled_frames, self.pool, shape[3]))
        m = ops.reshape(m, (shape[0], shape[1], pooled_frames, self.pool))
        count = ops.sum(m, axis=-1)
        x = ops.sum(x * m[..., None], axis=3) / ops.maximum(count, 1.0)[..., None]
        return x, ops.greater(count, 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            groups=self.groups, d_model=self.d_model, num_heads=self.num_heads, ff_dim=self.ff_dim,
            num_blocks=self.num_blocks, max_frames=self.max_frames, positional=self.positional, dropout=self.dropout,
            pool=self.pool,
        )
        return config


@register
class LevelAttentionPooling(keras.layers.Layer):
    """Attention pooling across levels with one learned query.

    ``call(h)``: ``h`` ``(B, L, D)`` -> ``(pooled (B, D), weights (B, L))``, where
    ``weights = softmax_L(q · W h_l / sqrt(D))`` and ``pooled = sum_l weights_l h_l``.
    """

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.key = self.add_weight(shape=(dim, dim), initializer="glorot_uniform", name="key")
        self.query = self.add_weight(shape=(dim,), initializer="random_normal", name="query")
        self.built = True

    def call(self, h):
        scores = ops.einsum("bld,de,e->bl", h, self.key, self.query) / math.sqrt(h.shape[-1])
        weights = ops.softmax(scores, axis=-1)
        return ops.einsum("bl,bld->bd", weights, h), weights

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1]), (input_shape[0], input_shape[1])


# -- models -----------------------------------------------------------------------------------------------------
_ENCODER_ARGS = ("d_model", "num_heads", "ff_dim", "num_blocks", "max_frames", "positional", "dropout", "pool")


@register
class CodeVoiceClassifier(keras.Model):
    """Classifier on RVQ codes ``(B, n_levels, frames)`` (int, :data:`PAD_CODE` on padded frames) -> logits
    ``(B, n_classes)``. Extra levels beyond ``n_levels`` are ignored.

    Per level: its own embedding table ``(codebook_size, d_model)`` and its own :class:`SequenceEncoder` (the
    level axis is the layers' group axis); then :class:`LevelAttentionPooling` across the levels, dropout and a
    ``Dense(n_classes)``.
    """

    def __init__(self, n_levels=8, codebook_size=1024, n_classes=2, d_model=32, num_heads=2, ff_dim=64,
                 num_blocks=1, max_frames=256, positional=True, dropout=0.1, pool=1, **kwargs):
        super().__init__(**kwargs)
        self.n_levels, self.codebook_size, self.n_classes = int(n_levels), int(codebook_size), int(n_classes)
        self.d_model, self.num_heads, self.ff_dim, self.num_blocks = (
            int(d_model), int(num_heads), int(ff_dim), int(num_blocks)
        )
        self.max_frames, self.positional, self.dropout = int(max_frames), bool(positional), dropout
        self.pool = int(pool)
        # one table per level, stored as rows [level * codebook_size, (level + 1) * codebook_size) of one table
        self.embedding = keras.layers.Embedding(self.n_levels * self.codebook_size, self.d_model, name="embedding")
        self.encoder = SequenceEncoder(self.n_levels, **{k: getattr(self, k) for k in _ENCODER_ARGS},
                                       name="encoder")
        self.level_pool = LevelAttentionPooling(name="level_pool")
        self.head_dropout = keras.layers.Dropout(dropout)
        self.head = keras.layers.Dense(self.n_classes, name="head")
        self.build()

    def build(self, input_shape=None):
        self.embedding.build((None, self.n_levels, None))
        self.encoder.build((None, self.n_levels, None, self.d_model))
        self.level_pool.build((None, self.n_levels, self.d_model))
        self.head.build((None, self.d_model))
        self.built = True

    def _forward(self, codes, training=False):
        codes = ops.convert_to_tensor(codes)
        if len(codes.shape) != 3 or (codes.shape[1] is not None and codes.shape[1] < self.n_levels):
            raise ValueError(f"expected codes (batch, >= {self.n_levels} levels, frames), got {tuple(codes.shape)}")
        codes = ops.cast(codes[:, : self.n_levels, :], "int32")
        mask = ops.greater_equal(codes, 0)
        offsets = ops.reshape(ops.arange(self.n_levels, dtype="int32") * self.codebook_size, (1, -1, 1))
        x = self.embedding(ops.clip(codes, 0, self.codebook_size - 1) + offsets)  # (B, L, T, D)
        pooled, weights = self.level_pool(self.encoder(x, mask, training=training))
        return self.head(self.head_dropout(pooled, training=training)), weights

    def call(self, codes, training=False):
        return self._forward(codes, training)[0]

    def level_attention(self, codes, batch_size=64):
        """Across-level attention weights ``(batch, n_levels)`` as a numpy array (rows sum to 1)."""
        codes = np.asarray(codes)
        out = [
            keras.ops.convert_to_numpy(self._forward(codes[i:i + batch_size], training=False)[1])
            for i in range(0, len(codes), batch_size)
        ]
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.n_levels), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            n_levels=self.n_levels, codebook_size=self.codebook_size, n_classes=self.n_classes,
            **{k: getattr(self, k) for k in _ENCODER_ARGS},
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class MelVoiceClassifier(keras.Model):
    """The baseline: ``Dense(d_model)`` on log-mel frames ``(B, frames, n_mels)`` (padded frames filled with
    :data:`MEL_PAD`), one :class:`SequenceEncoder`, dropout and ``Dense(n_classes)``."""

    def __init__(self, n_mels=64, n_classes=2, d_model=32, num_heads=2, ff_dim=64, num_blocks=1, max_frames=256,
                 positional=True, dropout=0.1, pool=1, **kwargs):
        super().__init__(**kwargs)
        self.n_mels, self.n_classes = int(n_mels), int(n_classes)
        self.d_model, self.num_heads, self.ff_dim, self.num_blocks = (
            int(d_model), int(num_heads), int(ff_dim), int(num_blocks)
        )
        self.max_frames, self.positional, self.dropout = int(max_frames), bool(positional), dropout
        self.pool = int(pool)
        self.project = keras.layers.Dense(self.d_model, name="project")
        self.encoder = SequenceEncoder(1, **{k: getattr(self, k) for k in _ENCODER_ARGS}, name="encoder")
        self.head_dropout = keras.layers.Dropout(dropout)
        self.head = keras.layers.Dense(self.n_classes, name="head")
        self.build()

    def build(self, input_shape=None):
        self.project.build((None, None, self.n_mels))
        self.encoder.build((None, 1, None, self.d_model))
        self.head.build((None, self.d_model))
        self.built = True

    def call(self, features, training=False):
        features = ops.cast(ops.convert_to_tensor(features), "float32")
        mask = ops.greater(features[..., 0], MEL_PAD / 2)
        x = self.project(ops.where(ops.expand_dims(mask, -1), features, 0.0))
        pooled = self.encoder(ops.expand_dims(x, 1), ops.expand_dims(mask, 1), training=training)[:, 0]
        return self.head(self.head_dropout(pooled, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(n_mels=self.n_mels, n_classes=self.n_classes, **{k: getattr(self, k) for k in _ENCODER_ARGS})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# -- feature helpers --------------------------------------------------------------------------------------------
def pad_codes(codes_list, n_frames=None, n_levels=None):
    """List of int codes ``(levels, frames_i)`` -> int32 ``(N, n_levels, n_frames)``, right-padded with
    :data:`PAD_CODE` (longer sequences are cut to ``n_frames``; default: the longest)."""
    n_levels = n_levels or min(c.shape[0] for c in codes_list)
    n_frames = n_frames or max(c.shape[1] for c in codes_list)
    out = np.full((len(codes_list), n_levels, n_frames), PAD_CODE, np.int32)
    for i, c in enumerate(codes_list):
        t = min(c.shape[1], n_frames)
        out[i, :, :t] = c[:n_levels, :t]
    return out


def pad_frames(frames_list, n_frames=None, pad_value=MEL_PAD):
    """List of float ``(frames_i, dim)`` -> float32 ``(N, n_frames, dim)`` right-padded with ``pad_value``."""
    n_frames = n_frames or max(f.shape[0] for f in frames_list)
    out = np.full((len(frames_list), n_frames, frames_list[0].shape[1]), pad_value, np.float32)
    for i, f in enumerate(frames_list):
        t = min(f.shape[0], n_frames)
        out[i, :t] = f[:t]
    return out


def log_mel(audio, sample_rate, hop_length, n_mels=64, window_length=1024, floor=1e-5):
    """Natural-log mel spectrogram of one mono clip ``(samples,)`` -> ``(ceil(samples / hop), n_mels)``.

    With the codec's ``hop_length`` the mel frames line up with the code frames."""
    from ..nn.spectral import mel_spectrogram

    audio = np.asarray(audio, np.float32).reshape(-1)
    frames = math.ceil(len(audio) / hop_length)
    padded = np.pad(audio, (0, max(frames * hop_length - len(audio), window_length // 2 + 1 - len(audio), 0)))
    mel = mel_spectrogram(padded[None], sample_rate, window_length, n_mels, hop_length=hop_length)
    mel = keras.ops.convert_to_numpy(mel)[0, :frames]
    return np.log(np.maximum(mel, floor)).astype(np.float32)


def pooled_stats(frames, lengths):
    """Per-clip mean and standard deviation over the real frames: ``(N, T, D)``, ``(N,)`` -> ``(N, 2 D)``."""
    frames = np.asarray(frames, np.float64)
    valid = (np.arange(frames.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None]
    count = np.maximum(valid.sum(axis=1), 1)
    mean = np.where(valid, frames, 0.0).sum(axis=1) / count
    var = np.where(valid, (frames - mean[:, None]) ** 2, 0.0).sum(axis=1) / count
    return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)


def speaker_folds(speakers, labels, n_folds=4, seed=0):
    """Speaker-disjoint, label-stratified folds: a list of ``(train_index, test_index)`` over the clips.

    Speakers (not clips) are dealt out: each label's speakers are shuffled with ``seed`` and dealt round-robin to
    the folds (continuing where the previous label stopped, so fold sizes stay even). Every speaker is tested in
    exactly one fold and never trains in that fold. A speaker whose clips carry more than one label counts under
    its most frequent label.
    """
    speakers, labels = np.asarray(speakers), np.asarray(labels)
    if speakers.shape != labels.shape:
        raise ValueError("speakers and labels must have one entry per clip")
    names = sorted(set(speakers.tolist()))
    if n_folds < 2 or n_folds > len(names):
        raise ValueError(f"n_folds={n_folds} needs between 2 and {len(names)} (the number of speakers)")
    by_label = {}
    for name in names:
        values, counts = np.unique(labels[speakers == name], return_counts=True)
        by_label.setdefault(values[np.argmax(counts)].item(), []).append(name)
    rng = np.random.default_rng(seed)
    fold_of, slot = {}, 0
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        for name in group:
            fold_of[name] = slot % n_folds
            slot += 1
    clip_fold = np.array([fold_of[s] for s in speakers.tolist()], dtype=int)
    return [(np.flatnonzero(clip_fold != k), np.flatnonzero(clip_fold == k)) for k in range(n_folds)]
