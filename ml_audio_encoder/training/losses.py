"""Training losses of the improved RVQGAN (DAC): multi-scale mel, multi-scale STFT, waveform L1, SI-SDR, and the
least-squares GAN / feature-matching losses.

Backend-neutral (``keras.ops`` only). Reconstruction losses are ``keras.losses.Loss`` subclasses with the Keras
argument order ``loss(y_true, y_pred)`` (reference first, estimate second) on channels-last audio ``(B, T, 1)``;
they compute in float32 and return a scalar (the mean over the batch of per-item losses, so ``sample_weight``
works). The spectral front end is shared with the discriminator (``ml_audio_encoder.nn.spectral``).
"""

from __future__ import annotations

import keras
from keras import ops

from ..nn.spectral import as_batch_time, magnitude, mel_filters, stft

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "MelSpectrogramLoss",
    "MultiScaleSTFTLoss",
    "L1Loss",
    "SISDRLoss",
    "si_sdr",
    "discriminator_loss",
    "generator_loss",
    "GANLoss",
]

_PKG = "ml_audio_encoder"

# DAC's lambdas (conf/base.yml): mel 15, feature matching 2, adversarial 1, commitment 0.25, codebook 1.
DEFAULT_LOSS_WEIGHTS = {
    "mel": 15.0,
    "adv/feat": 2.0,
    "adv/gen": 1.0,
    "vq/commitment": 0.25,
    "vq/codebook": 1.0,
}


def _per_item_mean(x):
    """Mean over every axis but the batch axis."""
    return ops.mean(ops.reshape(x, (ops.shape(x)[0], -1)), axis=1)


def _tuple(v, n, name):
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"{name} needs {n} entries, got {len(v)}")
        return tuple(v)
    return (v,) * n


def _batch_size(x):
    return x.shape[0] if x.shape[0] is not None else ops.shape(x)[0]


def _pair_spectra(y_true, y_pred):
    """Stack reference and estimate along the batch so each STFT runs once per scale."""
    a, b = as_batch_time(y_true), as_batch_time(y_pred)
    return ops.concatenate([a, b], axis=0), _batch_size(a)


def _log_l1(ref, est, clamp_eps, power):
    """Per-item ``mean |log10(clamp(est) ** power) - log10(clamp(ref) ** power)|``."""
    diff = ops.log10(ops.maximum(est, clamp_eps)) - ops.log10(ops.maximum(ref, clamp_eps))
    return _per_item_mean(ops.abs(diff)) * abs(power)


class _SpectralL1:
    """The per-scale terms the mel and STFT losses share (DAC's): ``log_weight · L1(log10 clamp(·)^pow)`` plus
    ``mag_weight · L1(|est - ref|)``, per item."""

    def _spectral_l1(self, ref, est):
        loss = 0.0
        if self.log_weight:
            loss = loss + self.log_weight * _log_l1(ref, est, self.clamp_eps, self.pow)
        if self.mag_weight:
            loss = loss + self.mag_weight * _per_item_mean(ops.abs(est - ref))
        return loss


@keras.saving.register_keras_serializable(package=_PKG)
class MelSpectrogramLoss(_SpectralL1, keras.losses.Loss):
    """Multi-scale mel-spectrogram distance, as DAC's ``MelSpectrogramLoss`` with DAC's training settings.

    For each scale: mel magnitudes (Slaney filterbank on the periodic-Hann STFT magnitude, hop ``w // 4``,
    centered frames), then ``log_weight * L1(log10(clamp(mel, clamp_eps) ** pow))`` ``+ mag_weight * L1(mel)``,
    summed over scales. Zero for identical audio.
    """

    def __init__(self, sample_rate=44100, n_mels=(5, 10, 20, 40, 80, 160, 320),
                 window_lengths=(32, 64, 128, 256, 512, 1024, 2048), clamp_eps=1e-5, mag_weight=0.0,
                 log_weight=1.0, pow=1.0, mel_fmin=None, mel_fmax=None, name="mel_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sample_rate = int(sample_rate)
        self.window_lengths = tuple(int(w) for w in window_lengths)
        n = len(self.window_lengths)
        self.n_mels = tuple(int(m) for m in _tuple(n_mels, n, "n_mels"))
        self.mel_fmin = tuple(0.0 if f is None else float(f) for f in _tuple(mel_fmin, n, "mel_fmin"))
        self.mel_fmax = tuple(None if f is None else float(f) for f in _tuple(mel_fmax, n, "mel_fmax"))
        self.clamp_eps = float(clamp_eps)
        self.mag_weight = float(mag_weight)
        self.log_weight = float(log_weight)
        self.pow = float(pow)
        # Build (and cache) the filterbanks now, in numpy.
        self._filters = [mel_filters(self.sample_rate, w, m, lo, hi) for w, m, lo, hi in
                         zip(self.window_lengths, self.n_mels, self.mel_fmin, self.mel_fmax)]

    def call(self, y_true, y_pred):
        both, b = _pair_spectra(y_true, y_pred)
        loss = 0.0
        for w, fb in zip(self.window_lengths, self._filters):
            real, imag = stft(both, w, w // 4)
            mel = ops.matmul(magnitude(real, imag), ops.convert_to_tensor(fb))
            loss = loss + self._spectral_l1(mel[:b], mel[b:])
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(sample_rate=self.sample_rate, n_mels=self.n_mels, window_lengths=self.window_lengths,
                      clamp_eps=self.clamp_eps, mag_weight=self.mag_weight, log_weight=self.log_weight,
                      pow=self.pow, mel_fmin=self.mel_fmin, mel_fmax=self.mel_fmax)
        return config


@keras.saving.register_keras_serializable(package=_PKG)
class MultiScaleSTFTLoss(_SpectralL1, keras.losses.Loss):
    """Multi-scale STFT loss (DDSP; DAC's ``MultiScaleSTFTLoss``): per window,
    ``log_weight * L1(log10(clamp(|X|, clamp_eps) ** pow)) + mag_weight * L1(|X|)``, hop ``w // 4``."""

    def __init__(self, window_lengths=(2048, 512), clamp_eps=1e-5, mag_weight=1.0, log_weight=1.0, pow=2.0,
                 name="stft_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.window_lengths = tuple(int(w) for w in window_lengths)
        self.clamp_eps = float(clamp_eps)
        self.mag_weight = float(mag_weight)
        self.log_weight = float(log_weight)
        self.pow = float(pow)

    def call(self, y_true, y_pred):
        both, b = _pair_spectra(y_true, y_pred)
        loss = 0.0
        for w in self.window_lengths:
            real, imag = stft(both, w, w // 4)
            mag = magnitude(real, imag)
            loss = loss + self._spectral_l1(mag[:b], mag[b:])
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(window_lengths=self.window_lengths, clamp_eps=self.clamp_eps, mag_weight=self.mag_weight,
                      log_weight=self.log_weight, pow=self.pow)
        return config


@keras.saving.register_keras_serializable(package=_PKG)
class PhaseLoss(keras.losses.Loss):
    """Wrap-aware phase losses (APNet / APCodec, Ai & Ling 2023-24) on the STFT of the output audio.

    Three terms, each a magnitude-weighted mean of ``1 − cos(Δ)`` where Δ is a phase error, so that an error of
    2π costs nothing (the "anti-wrapping" property) and the gradient stays bounded:

    * instantaneous phase (IP): Δ = ∠X̂ − ∠X per bin;
    * group delay (GD): Δ = the difference along frequency of ∠X̂ minus that of ∠X;
    * instantaneous frequency (IAF): Δ = the difference along time of ∠X̂ minus that of ∠X — the term that asks
      harmonics to glide at the right speed instead of sitting at multiples of the frame rate.

    Angles are never formed: ``cos Δ`` comes from complex products (``Re(a b*) / |a||b|``), which avoids atan2's
    unbounded gradient near zero. Each term is weighted by the reference's magnitude (for GD and IAF the geometric
    mean of the two neighbours'), and bins more than ``floor_db`` below the item's loudest bin are left out: the
    phase of an inaudible bin is noise.
    """

    def __init__(self, n_fft=1280, hop_length=320, ip_weight=1.0, gd_weight=1.0, iaf_weight=1.0, floor_db=60.0,
                 name="phase_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.ip_weight, self.gd_weight, self.iaf_weight = float(ip_weight), float(gd_weight), float(iaf_weight)
        self.floor_db = float(floor_db)
        self.eps = 1e-20

    def _cos_term(self, est_re, est_im, ref_re, ref_im, weight):
        # cos(∠est − ∠ref) = Re(est · conj(ref)) / (|est| |ref|)
        dot = est_re * ref_re + est_im * ref_im
        norm = ops.sqrt((ops.square(est_re) + ops.square(est_im)) * (ops.square(ref_re) + ops.square(ref_im))
                        + self.eps)
        err = 1.0 - dot / norm
        return ops.sum(weight * err, axis=(1, 2)) / (ops.sum(weight, axis=(1, 2)) + self.eps)

    @staticmethod
    def _product_conj(re, im, axis):
        """``z[k] · conj(z[k − 1])`` along ``axis`` (1: time, 2: frequency) -> (re, im)."""
        def cut(x, start, stop):
            return x[:, start:stop, :] if axis == 1 else x[:, :, start:stop]
        a_re, a_im, b_re, b_im = cut(re, 1, None), cut(im, 1, None), cut(re, 0, -1), cut(im, 0, -1)
        return a_re * b_re + a_im * b_im, a_im * b_re - a_re * b_im

    def call(self, y_true, y_pred):
        both, b = _pair_spectra(y_true, y_pred)
        re, im = stft(both, self.n_fft, self.hop_length)
        ref_re, ref_im, est_re, est_im = re[:b], im[:b], re[b:], im[b:]
        mag = ops.stop_gradient(magnitude(ref_re, ref_im))
        floor = ops.max(mag, axis=(1, 2), keepdims=True) * 10.0 ** (-self.floor_db / 20.0)
        mag = ops.where(mag > floor, mag, ops.zeros_like(mag))
        loss = 0.0
        if self.ip_weight:
            loss = loss + self.ip_weight * self._cos_term(est_re, est_im, ref_re, ref_im, mag)
        for weight_name, axis in (("gd_weight", 2), ("iaf_weight", 1)):
            w = getattr(self, weight_name)
            if not w:
                continue
            e = self._product_conj(est_re, est_im, axis)
            r = self._product_conj(ref_re, ref_im, axis)
            mag_a = mag[:, 1:, :] if axis == 1 else mag[:, :, 1:]
            mag_b = mag[:, :-1, :] if axis == 1 else mag[:, :, :-1]
            loss = loss + w * self._cos_term(e[0], e[1], r[0], r[1], ops.sqrt(mag_a * mag_b))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(n_fft=self.n_fft, hop_length=self.hop_length, ip_weight=self.ip_weight,
                      gd_weight=self.gd_weight, iaf_weight=self.iaf_weight, floor_db=self.floor_db)
        return config


@keras.saving.register_keras_serializable(package=_PKG)
class L1Loss(keras.losses.Loss):
    """Mean absolute error between waveforms."""

    def __init__(self, name="waveform_l1", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return _per_item_mean(ops.abs(as_batch_time(y_pred) - as_batch_time(y_true)))


def si_sdr(reference, estimate, scaling=True, zero_mean=True, eps=1e-8):
    """Per-item scale-invariant SDR in dB, shape ``(batch,)``.

    ``reference`` / ``estimate``: ``(B, T, 1)`` or ``(B, T)``. With ``scaling=False`` this is plain SNR. ``eps``
    keeps the value finite: identical signals give a large positive number (~80 dB or more, limited by float32
    rounding), silence vs. silence 0 dB.
    """
    ref, est = as_batch_time(reference), as_batch_time(estimate)
    if zero_mean:
        ref = ref - ops.mean(ref, axis=1, keepdims=True)
        est = est - ops.mean(est, axis=1, keepdims=True)
    ref_energy = ops.sum(ops.square(ref), axis=1, keepdims=True)
    if scaling:
        scale = ops.sum(est * ref, axis=1, keepdims=True) / (ref_energy + eps)
    else:
        scale = 1.0
    e_true = scale * ref
    e_res = est - e_true
    signal = ops.sum(ops.square(e_true), axis=1)
    noise = ops.sum(ops.square(e_res), axis=1)
    return 10.0 * ops.log10((signal + eps) / (noise + eps))


@keras.saving.register_keras_serializable(package=_PKG)
class SISDRLoss(keras.losses.Loss):
    """Negative SI-SDR in dB (lower is better), as DAC's ``SISDRLoss``; ``clip_min`` clamps the per-item loss
    from below (so already-good items stop contributing)."""

    def __init__(self, scaling=True, zero_mean=True, clip_min=None, name="sisdr_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scaling = bool(scaling)
        self.zero_mean = bool(zero_mean)
        self.clip_min = None if clip_min is None else float(clip_min)

    def call(self, y_true, y_pred):
        loss = -si_sdr(y_true, y_pred, scaling=self.scaling, zero_mean=self.zero_mean)
        if self.clip_min is not None:
            loss = ops.maximum(loss, self.clip_min)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(scaling=self.scaling, zero_mean=self.zero_mean, clip_min=self.clip_min)
        return config


def _f32(x):
    return ops.cast(x, "float32")


def discriminator_loss(d_fake, d_real):
    """Least-squares discriminator loss, summed over sub-discriminators (as DAC):
    ``sum_i mean(fake_i[-1] ** 2) + mean((1 - real_i[-1]) ** 2)``.

    ``d_fake`` / ``d_real``: the outputs of ``Discriminator`` (lists of lists of feature maps, last = logits).
    Pass ``d_fake`` computed on ``stop_gradient(fake_audio)`` (``GANLoss.discriminator_loss`` does).
    """
    loss = 0.0
    for fake, real in zip(d_fake, d_real):
        loss = loss + ops.mean(ops.square(_f32(fake[-1]))) + ops.mean(ops.square(1.0 - _f32(real[-1])))
    return loss


def generator_loss(d_fake, d_real):
    """Generator losses ``(adversarial, feature_matching)`` as DAC:

    adversarial ``= sum_i mean((1 - fake_i[-1]) ** 2)``; feature matching ``= sum_i sum_j mean|fake_ij -
    stop_gradient(real_ij)|`` over every feature map except the logits (each layer's L1 is a mean, layers and
    sub-discriminators are summed).
    """
    adv = 0.0
    for fake in d_fake:
        adv = adv + ops.mean(ops.square(1.0 - _f32(fake[-1])))
    feat = 0.0
    for fake, real in zip(d_fake, d_real):
        for f, r in zip(fake[:-1], real[:-1]):
            feat = feat + ops.mean(ops.abs(_f32(f) - ops.stop_gradient(_f32(r))))
    return adv, feat


def _split_outputs(outputs, b):
    fake = [[f[:b] for f in sub] for sub in outputs]
    real = [[f[b:] for f in sub] for sub in outputs]
    return fake, real


class GANLoss:
    """Least-squares GAN losses around a discriminator (DAC's ``GANLoss``).

    ``discriminator_loss(fake, real)`` (fake is stop-gradient'ed) and ``generator_loss(fake, real) -> (adv,
    feat)`` take audio ``(B, T, 1)``. Fake and real run through the discriminator in one batch of ``2B``
    (equivalent, since the discriminator's preprocessing and layers act per item).
    """

    def __init__(self, discriminator):
        self.discriminator = discriminator

    def forward(self, fake, real, training=None):
        fake = ops.convert_to_tensor(fake)
        real = ops.convert_to_tensor(real)
        b = _batch_size(fake)
        out = self.discriminator(ops.concatenate([fake, ops.cast(real, fake.dtype)], axis=0), training=training)
        return _split_outputs(out, b)

    def discriminator_loss(self, fake, real, training=None):
        d_fake, d_real = self.forward(ops.stop_gradient(fake), real, training=training)
        return discriminator_loss(d_fake, d_real)

    def generator_loss(self, fake, real, training=None):
        d_fake, d_real = self.forward(fake, real, training=training)
        return generator_loss(d_fake, d_real)

    def get_config(self):
        return {"discriminator": keras.saving.serialize_keras_object(self.discriminator)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["discriminator"]))
