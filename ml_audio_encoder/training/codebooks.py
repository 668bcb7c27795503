"""Codebooks that start alive and stay alive: k-means initialization from real audio and dead-code restarts.

DAC's factorized, L2-normalized codes already keep many codes in use, but on a CPU budget of a few thousand steps a
level that starts with most codes far from the data spends its whole run half empty. EnCodec's answer
(``quantization/core_vq.py``) is to initialize each codebook by k-means on the first batches and to re-seed codes
that went unused from recent encoder outputs; here both act on
:class:`~ml_audio_encoder.nn.quantize.ResidualVectorQuantize`
between training steps:

* :func:`init_codebooks_from_data` — encode the first batches and fit every level (coarsest first) by k-means on
  the residual it will see.
* :class:`CodeUsage` — a metric the train step updates with the codes it produced (counts per level and code); its
  result, the fraction of codes used, is logged as ``codes/used``.
* :class:`DeadCodeRestart` — every ``check_every`` steps reads those counts; a code unused for ``restart_after``
  steps is replaced by a projected residual from a fresh batch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def init_codebooks_from_data(generator, dataset, n_batches=32, first_batch=0, iters=20, seed=0):
    """k-means-initialize ``generator.quantizer`` on the encoder's output for ``n_batches`` batches of ``dataset``
    (anything indexable by batch number giving ``(B, T, 1)`` audio, or an iterable of such batches).

    Returns the fraction of codes in use per level on those batches right after initialization.
    """
    latents = []
    if hasattr(dataset, "get_batch"):
        batches = (dataset.get_batch(first_batch + i) for i in range(n_batches))
    else:
        batches = (b for _, b in zip(range(n_batches), dataset))
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        latents.append(np.asarray(ops.convert_to_numpy(generator.encoder(generator.preprocess(x)))))
    z = np.concatenate([zb.reshape(1, -1, zb.shape[-1]) for zb in latents], axis=1)
    return generator.quantizer.init_codebooks(z, iters=iters, seed=seed)


class CodeUsage(keras.metrics.Metric):
    """Counts how often each code of each level was chosen (since the last reset); ``result()`` is the fraction
    of codes used, averaged over levels."""

    def __init__(self, n_codebooks, codebook_size, name="codes/used", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_codebooks, self.codebook_size = int(n_codebooks), int(codebook_size)
        self.counts = self.add_variable(shape=(self.n_codebooks, self.codebook_size), initializer="zeros",
                                        name="counts")

    def update_state(self, codes):
        """``codes``: int ``(B, n_q, T)`` as the quantizer returns them."""
        codes = ops.cast(codes, "int32")
        n_q = codes.shape[1]
        # A scatter-add over (level, code) pairs: a one-hot (B, n_q, T, K) tensor would cost more than the RVQ, and
        # ops.bincount does not compile under JAX (its output length depends on the values).
        offsets = ops.reshape(ops.arange(n_q, dtype="int32") * self.codebook_size, (1, n_q, 1))
        flat = ops.reshape(codes + offsets, (-1, 1))
        counts = ops.scatter(flat, ops.ones((ops.shape(flat)[0],), "float32"),
                             (self.n_codebooks * self.codebook_size,))
        counts = ops.reshape(counts, (self.n_codebooks, self.codebook_size))
        self.counts.assign(self.counts + counts)

    def result(self):
        return ops.mean(ops.cast(self.counts > 0, "float32"))

    def reset_state(self):
        self.counts.assign(ops.zeros(self.counts.shape, dtype=self.counts.dtype))


class DeadCodeRestart(keras.callbacks.Callback):
    """Re-seed codes unused for ``restart_after`` steps from the projected residuals of a fresh training batch.

    The counts come from the trainer's :class:`CodeUsage` metric, read every ``check_every`` steps (a state sync
    under JAX, hence not every step). Restarted codes are logged as ``codes/restarted`` in the next epoch's logs.
    """

    def __init__(self, dataset, restart_after=100, check_every=10, seed=0):
        super().__init__()
        self.dataset = dataset
        self.restart_after, self.check_every = int(restart_after), int(check_every)
        self.seed = int(seed)
        self.last_used = None
        self.restarted = 0

    def _step(self):
        it = self.model.optimizer.iterations
        return int(it.numpy() if hasattr(it, "numpy") else it)

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.check_every:
            return
        trainer = self.model
        if keras.backend.backend() == "jax":
            trainer.jax_state_sync()  # variables now hold the current state; the next step re-reads them
        usage = trainer.code_usage
        counts = np.asarray(ops.convert_to_numpy(usage.counts))
        usage.reset_state()
        step = self._step()
        if self.last_used is None:
            self.last_used = np.full(counts.shape, step, dtype=np.int64)
        self.last_used[counts > 0] = step
        dead_levels = {i: np.flatnonzero(step - self.last_used[i] >= self.restart_after)
                       for i in range(counts.shape[0])}
        if not any(len(d) for d in dead_levels.values()):
            return
        generator = trainer.generator
        x = self.dataset.get_batch(10_000_000 + step) if hasattr(self.dataset, "get_batch") else self.dataset[0]
        inputs = generator.quantizer.level_inputs(generator.encoder(generator.preprocess(x)))
        for level, dead in dead_levels.items():
            if len(dead):
                generator.quantizer.quantizers[level].restart_codes(dead, inputs[level], seed=self.seed + step + level)
                self.last_used[level, dead] = step  # give the new codes a full window to be picked
                self.restarted += len(dead)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["codes/restarted"] = self.restarted
        self.restarted = 0
