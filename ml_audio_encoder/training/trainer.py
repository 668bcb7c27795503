"""GAN training of the codec with ``model.fit``: one discriminator update, then one generator update per batch.

The losses are written once with ``keras.ops``; only the gradient plumbing is backend-specific, because Keras asks
for a stateful ``train_step(data)`` under TensorFlow and a pure ``train_step(state, data)`` under JAX:

* TensorFlow: ``tf.GradientTape``; works inside ``tf.distribute`` strategies (losses are averaged per replica and
  the optimizers all-reduce the gradients).
* JAX: ``stateless_call`` and ``jax.vjp``: the generator runs forward once, the discriminator step uses its output
  with the gradient stopped, and the generator's gradient is pulled back through the saved VJP.

Two optimizers do not fit Keras' single ``model.optimizer`` slot, so :class:`OptimizerPair` presents both as one
(their variables concatenated) to the parts of ``fit`` that carry optimizer state between steps.
"""

from __future__ import annotations

import keras
from keras import ops

from . import losses as L
from .codebooks import CodeUsage

DEFAULT_LOSS_WEIGHTS = dict(L.DEFAULT_LOSS_WEIGHTS)


class OptimizerPair:
    """The generator's and the discriminator's optimizers, seen by ``fit`` as one optimizer state."""

    built = True

    def __init__(self, generator, discriminator):
        self.generator = generator
        self.discriminator = discriminator

    @property
    def variables(self):
        return list(self.generator.variables) + list(self.discriminator.variables)

    @property
    def iterations(self):
        return self.generator.iterations

    def build(self, variables):  # both halves are built by CodecTrainer.compile
        pass

    def scale_loss(self, loss):
        return loss

    def split(self, values):
        n = len(self.generator.variables)
        return list(values[:n]), list(values[n:])


@keras.saving.register_keras_serializable(package="ml_audio_encoder")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """DAC's ``lr · γ^step``, ramped up linearly over ``warmup_steps`` steps after ``warmup_start``.

    ``decay_from`` restarts the decay: the exponent counts the steps after it (``lr · γ^max(step − decay_from, 0)``),
    so a late run can raise the learning rate again and anneal it anew (a warm restart, as in SGDR) while the step
    count, and with it every logged curve, keeps running. ``restart_every`` repeats that restart every N steps after
    ``decay_from`` (exponent ``(step − decay_from) mod N``), so one long run goes through cycle after cycle without
    being stopped and reconfigured at each.

    The ramp is for runs that continue from committed weights without the optimizer's moments (``--init-from``):
    Adam with fresh moments and a step count past its bias correction takes steps ~(1 − β1)/√(1 − β2) = 2x too
    large at first, which a short warm-up absorbs. The decay follows the global step, so the schedule's position
    carries over a restart.
    """

    def __init__(self, learning_rate, gamma=1.0, warmup_start=0, warmup_steps=0, decay_from=0, restart_every=0):
        self.learning_rate, self.gamma = float(learning_rate), float(gamma)
        self.warmup_start, self.warmup_steps = int(warmup_start), int(warmup_steps)
        self.decay_from, self.restart_every = int(decay_from), int(restart_every)
        if self.restart_every < 0:
            raise ValueError(f"restart_every must be >= 0, got {restart_every}")

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        exponent = keras.ops.maximum(step - self.decay_from, 0.0)
        if self.restart_every > 0:
            exponent = keras.ops.mod(exponent, float(self.restart_every))
        lr = self.learning_rate * keras.ops.power(self.gamma, exponent)
        if self.warmup_steps > 0:
            ramp = (step - self.warmup_start + 1.0) / self.warmup_steps
            lr = lr * keras.ops.clip(ramp, 0.0, 1.0)
        return lr

    def get_config(self):
        return {"learning_rate": self.learning_rate, "gamma": self.gamma, "warmup_start": self.warmup_start,
                "warmup_steps": self.warmup_steps, "decay_from": self.decay_from, "restart_every": self.restart_every}


def make_optimizer(learning_rate=1e-4, betas=(0.8, 0.99), gamma=0.999996, weight_decay=0.01, clipnorm=None,
                   warmup_start=0, warmup_steps=0, decay_from=0, restart_every=0):
    """AdamW with DAC's per-step exponential decay (``lr · γ^step``), an optional linear warm-up and global-norm
    gradient clipping."""
    return keras.optimizers.AdamW(
        learning_rate=WarmupExponentialDecay(learning_rate, gamma, warmup_start, warmup_steps, decay_from,
                                             restart_every),
        beta_1=betas[0],
        beta_2=betas[1],
        weight_decay=weight_decay,
        global_clipnorm=clipnorm,
    )


def _global_norm(grads):
    return ops.sqrt(sum(ops.sum(ops.square(g)) for g in grads if g is not None))


class CodecTrainer(keras.Model):
    """Wraps a generator (:class:`~ml_audio_encoder.models.codec.MLAudioEncoder`) and a discriminator for ``fit``.

    ``adversarial=False`` trains the generator on the reconstruction and VQ losses alone (a warm-up phase that
    skips the discriminator's cost entirely); switch it with :meth:`set_adversarial`.
    """

    TRAIN_METRICS = (
        "loss/discriminator", "loss/generator", "mel", "stft", "waveform_l1", "phase", "adv/gen", "adv/feat",
        "vq/commitment", "vq/codebook", "grad_norm/generator", "grad_norm/discriminator",
    )
    TEST_METRICS = ("mel", "stft", "waveform_l1", "phase", "si_sdr")

    def __init__(self, generator, discriminator, adversarial=True, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.adversarial = bool(adversarial)
        self.mel_loss = L.MelSpectrogramLoss(sample_rate=generator.sample_rate)
        self.stft_loss = L.MultiScaleSTFTLoss()
        self.waveform_loss = L.L1Loss()
        # At the codec's own STFT (n_fft = 4 hop): the resolution at which an iSTFT head sets its phase.
        self.phase_loss = L.PhaseLoss(4 * generator.hop_length, generator.hop_length)
        self.train_trackers = {n: keras.metrics.Mean(name=n) for n in self.TRAIN_METRICS}
        # Which codes the train step picked: logged as codes/used, read by callbacks.DeadCodeRestart.
        self.code_usage = CodeUsage(generator.quantizer.n_codebooks, generator.quantizer.codebook_size)
        self.train_trackers["codes/used"] = self.code_usage
        self.test_trackers = {n: keras.metrics.Mean(name=n) for n in self.TEST_METRICS}

    @property
    def metrics(self):
        return list(self.train_trackers.values()) + list(self.test_trackers.values())

    def compile(self, g_optimizer=None, d_optimizer=None, loss_weights=None, **kwargs):
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer or make_optimizer(clipnorm=1000.0)
        self.d_optimizer = d_optimizer or make_optimizer(clipnorm=10.0)
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.optimizer = OptimizerPair(self.g_optimizer, self.d_optimizer)

    def set_adversarial(self, on):
        """Turn the GAN losses on or off; the next ``fit`` re-traces its step function."""
        if bool(on) != self.adversarial:
            self.adversarial = bool(on)
            self.train_function = None

    def call(self, audio, training=False):
        return self.generator(audio, training=training)

    # -- losses, shared by both backends ----------------------------------------------------------------------
    @staticmethod
    def _audio(data):
        return data[0] if isinstance(data, (tuple, list)) else data

    def _discriminator_loss(self, d_fake, d_real):
        return L.discriminator_loss(d_fake, d_real)

    def _generator_losses(self, x, out, d_fake, d_real):
        """Every generator loss term (unweighted) and their weighted sum under ``"loss/generator"``."""
        y = out["audio"]
        terms = {
            **self._reconstruction_terms(x, y),
            "vq/commitment": out["vq/commitment_loss"],
            "vq/codebook": out["vq/codebook_loss"],
        }
        if d_fake is not None:
            terms["adv/gen"], terms["adv/feat"] = L.generator_loss(d_fake, d_real)
        total = sum(self.loss_weights.get(k, 0.0) * v for k, v in terms.items())
        return total, terms

    # Reconstruction terms computed in a train step only when weighted (their cost is not small next to a
    # frame-rate codec's); evaluation computes every one.
    OPTIONAL_TERMS = ("stft", "waveform_l1", "phase")

    def _reconstruction_terms(self, x, y, training=True):
        # ``Loss.call`` (per-item values) and a plain mean, not ``Loss.__call__``: under ``tf.distribute`` Keras'
        # reduction also divides by the number of replicas, which the train step already does (``share``); the
        # reconstruction terms were scaled by 1 / replicas twice and logged at 1 / replicas of their value.
        losses = {"stft": self.stft_loss, "waveform_l1": self.waveform_loss, "phase": self.phase_loss}
        terms = {"mel": ops.mean(self.mel_loss.call(x, y))}
        for name, loss in losses.items():
            if not training or self.loss_weights.get(name, 0.0):
                terms[name] = ops.mean(loss.call(x, y))
        return terms

    def _test_terms(self, x, y):
        return {**self._reconstruction_terms(x, y, training=False), "si_sdr": ops.mean(L.si_sdr(x, y))}

    # -- TensorFlow plumbing ----------------------------------------------------------------------------------
    def _tf_train_step(self, data):
        import tensorflow as tf

        x = self._audio(data)
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        # Optimizers sum gradients over replicas, so each replica differentiates its share of the mean loss.
        share = 1.0 / tf.distribute.get_strategy().num_replicas_in_sync
        logs = {}
        g_tape = tf.GradientTape()
        with g_tape:
            out = self.generator(x, training=True)
        y = out["audio"]
        d_fake = d_real = None
        if self.adversarial:
            # Outside the generator's tape: the discriminator step must not be recorded there. (Nesting it under
            # g_tape.stop_recording() would not work: that pauses every tape, the inner one too.)
            with tf.GradientTape() as d_tape:
                d_loss = self._discriminator_loss(self.discriminator(tf.stop_gradient(y)), self.discriminator(x))
                d_scaled = d_loss * share  # inside the tape: only recorded operations can be differentiated
            d_grads = d_tape.gradient(d_scaled, d_vars)
            self.d_optimizer.apply_gradients(zip(d_grads, d_vars))
            logs["loss/discriminator"] = d_loss
            logs["grad_norm/discriminator"] = _global_norm(d_grads)
        with g_tape:  # re-entered: the generator loss sees the updated discriminator, as in DAC
            if self.adversarial:
                d_fake, d_real = self.discriminator(y), self.discriminator(x)
            g_loss, terms = self._generator_losses(x, out, d_fake, d_real)
            g_scaled = g_loss * share
        g_grads = g_tape.gradient(g_scaled, g_vars)
        self.g_optimizer.apply_gradients(zip(g_grads, g_vars))
        logs.update(terms)
        logs["loss/generator"] = g_loss
        logs["grad_norm/generator"] = _global_norm(g_grads)
        logs["codes/used"] = out["codes"]
        return self._update(self.train_trackers, logs)

    def _tf_test_step(self, data):
        x = self._audio(data)
        y = self.generator(x, training=False)["audio"]
        return self._update(self.test_trackers, self._test_terms(x, y))

    def _update(self, trackers, values):
        for name, value in values.items():
            trackers[name].update_state(value)
        return {name: trackers[name].result() for name in values}

    # -- JAX plumbing -----------------------------------------------------------------------------------------
    def _jax_split(self, trainable, non_trainable):
        ng = len(self.generator.trainable_variables)
        ngn = len(self.generator.non_trainable_variables)
        return trainable[:ng], trainable[ng:], non_trainable[:ngn], non_trainable[ngn:]

    def _jax_update_metrics(self, trackers, metrics_variables, values):
        """Stateless metric updates: returns (logs, new metrics_variables) for ``self.metrics`` order."""
        new_vars, logs, i = [], {}, 0
        for metric in self.metrics:
            n = len(metric.variables)
            mvars = metrics_variables[i : i + n]
            name = next((k for k, t in trackers.items() if t is metric), None)
            if name is not None and name in values:
                mvars = metric.stateless_update_state(mvars, values[name])
                logs[name] = metric.stateless_result(mvars)
            new_vars.extend(mvars)
            i += n
        return logs, new_vars

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        g_tv, d_tv, g_ntv, d_ntv = self._jax_split(trainable, non_trainable)
        g_opt_vars, d_opt_vars = self.optimizer.split(optimizer_variables)
        x = self._audio(data)

        def generator_forward(tv):
            out, new_ntv = self.generator.stateless_call(tv, g_ntv, x, training=True)
            keep = {k: out[k] for k in ("audio", "vq/commitment_loss", "vq/codebook_loss")}
            return keep, (new_ntv, out["codes"])

        out, g_vjp, (g_ntv, codes) = jax.vjp(generator_forward, g_tv, has_aux=True)
        logs = {}
        d_fake = d_real = None

        if self.adversarial:
            y_detached = jax.lax.stop_gradient(out["audio"])

            def d_loss_fn(tv):
                fake, _ = self.discriminator.stateless_call(tv, d_ntv, y_detached)
                real, _ = self.discriminator.stateless_call(tv, d_ntv, x)
                return self._discriminator_loss(fake, real)

            d_loss, d_grads = jax.value_and_grad(d_loss_fn)(d_tv)
            d_tv, d_opt_vars = self.d_optimizer.stateless_apply(d_opt_vars, d_grads, d_tv)
            logs["loss/discriminator"] = d_loss
            logs["grad_norm/discriminator"] = _global_norm(d_grads)

        def g_loss_fn(out):
            d_fake = d_real = None
            if self.adversarial:
                d_fake, _ = self.discriminator.stateless_call(d_tv, d_ntv, out["audio"])
                d_real, _ = self.discriminator.stateless_call(d_tv, d_ntv, x)
            return self._generator_losses(x, out, d_fake, d_real)

        (g_loss, terms), d_out = jax.value_and_grad(g_loss_fn, has_aux=True)(out)
        (g_grads,) = g_vjp(d_out)
        g_tv, g_opt_vars = self.g_optimizer.stateless_apply(g_opt_vars, g_grads, g_tv)
        del d_fake, d_real

        logs.update(terms)
        logs["loss/generator"] = g_loss
        logs["grad_norm/generator"] = _global_norm(g_grads)
        logs["codes/used"] = codes
        logs, metrics_variables = self._jax_update_metrics(self.train_trackers, metrics_variables, logs)
        state = (
            list(g_tv) + list(d_tv),
            list(g_ntv) + list(d_ntv),
            list(g_opt_vars) + list(d_opt_vars),
            metrics_variables,
        )
        return logs, state

    def _jax_test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        g_tv, _, g_ntv, _ = self._jax_split(trainable, non_trainable)
        x = self._audio(data)
        out, _ = self.generator.stateless_call(g_tv, g_ntv, x, training=False)
        logs, metrics_variables = self._jax_update_metrics(
            self.test_trackers, metrics_variables, self._test_terms(x, out["audio"])
        )
        return logs, (trainable, non_trainable, metrics_variables)

    # -- dispatch ---------------------------------------------------------------------------------------------
    def train_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        if keras.backend.backend() == "tensorflow":
            return self._tf_train_step(*args)
        raise NotImplementedError(
            f"CodecTrainer supports the tensorflow and jax backends, not {keras.backend.backend()}")

    def test_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_test_step(*args)
        return self._tf_test_step(*args)
