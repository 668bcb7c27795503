"""The generator: convolutional encoder, residual vector quantizer, convolutional decoder (DAC's architecture).

Shapes are channels-last. Every convolution is padded so that ``frames = T / hop_length`` and the decoder returns
``frames · hop_length`` samples; :meth:`MLAudioEncoder.preprocess` right-pads input to a multiple of the hop.
"""

from __future__ import annotations

import hashlib
import math

import keras
import numpy as np
from keras import ops

from ..nn.layers import ResidualUnit, Snake1d, WNConv1d, WNConvTranspose1d, register
from ..nn.quantize import ResidualVectorQuantize


@register
class EncoderBlock(keras.layers.Layer):
    """Three dilated residual units at ``dim // 2`` channels, then a strided conv that doubles the channels."""

    def __init__(self, dim, stride, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.stride = int(dim), int(stride)
        self.units = [ResidualUnit(self.dim // 2, dilation=d) for d in (1, 3, 9)]
        self.snake = Snake1d()
        self.conv = WNConv1d(self.dim, 2 * self.stride, strides=self.stride, padding=math.ceil(self.stride / 2))

    def call(self, x):
        for unit in self.units:
            x = unit(x)
        return self.conv(self.snake(x))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "stride": self.stride}


@register
class Encoder(keras.layers.Layer):
    """Waveform ``(B, T, 1)`` -> latent ``(B, T / prod(strides), d_latent)``."""

    def __init__(self, d_model=64, strides=(2, 4, 8, 8), d_latent=64, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.strides, self.d_latent = int(d_model), [int(s) for s in strides], int(d_latent)
        self.stem = WNConv1d(self.d_model, 7, padding=3)
        dim = self.d_model
        self.blocks = []
        for stride in self.strides:
            dim *= 2
            self.blocks.append(EncoderBlock(dim, stride))
        self.snake = Snake1d()
        self.head = WNConv1d(self.d_latent, 3, padding=1)

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.snake(x))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "strides": self.strides, "d_latent": self.d_latent}


@register
class DecoderBlock(keras.layers.Layer):
    """Snake, transposed conv that upsamples by ``stride`` to ``output_dim`` channels, three residual units."""

    def __init__(self, output_dim, stride, **kwargs):
        super().__init__(**kwargs)
        self.output_dim, self.stride = int(output_dim), int(stride)
        self.snake = Snake1d()
        self.conv = WNConvTranspose1d(
            self.output_dim,
            2 * self.stride,
            strides=self.stride,
            padding=math.ceil(self.stride / 2),
            output_padding=self.stride % 2,
        )
        self.units = [ResidualUnit(self.output_dim, dilation=d) for d in (1, 3, 9)]

    def call(self, x):
        x = self.conv(self.snake(x))
        for unit in self.units:
            x = unit(x)
        return x

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim, "stride": self.stride}


@register
class Decoder(keras.layers.Layer):
    """Latent ``(B, frames, d)`` -> waveform ``(B, frames · prod(rates), d_out)`` in [-1, 1] (tanh output)."""

    def __init__(self, channels=1536, rates=(8, 8, 4, 2), d_out=1, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.rates, self.d_out = int(channels), [int(r) for r in rates], int(d_out)
        self.stem = WNConv1d(self.channels, 7, padding=3)
        self.blocks = [DecoderBlock(self.channels // 2 ** (i + 1), r) for i, r in enumerate(self.rates)]
        self.snake = Snake1d()
        self.head = WNConv1d(self.d_out, 7, padding=3)

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return ops.tanh(self.head(self.snake(x)))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "rates": self.rates, "d_out": self.d_out}


def _conv_layers(layer):
    """The conv layers under ``layer`` in forward order: depth-first over sub-layers in the order they were set,
    which is the order every ``call`` here applies them in."""
    found = []
    for child in layer._layers:
        if isinstance(child, (WNConv1d, WNConvTranspose1d)):
            found.append(child)
        else:
            found.extend(_conv_layers(child))
    return found


def _input_interval(convs, first, last):
    """Input positions that outputs ``first..last`` of a conv chain depend on, as ``(lo, hi)`` (inclusive).

    Walks the chain backwards with PyTorch's index arithmetic. Residual branches never reach further than the
    conv chain they wrap, so the chain alone gives the exact support.
    """
    lo, hi = first, last
    for conv in reversed(convs):
        k_span, s, p = conv.dilation_rate * (conv.kernel_size - 1), conv.strides, conv.padding
        if isinstance(conv, WNConvTranspose1d):
            lo, hi = -((-(lo + p - k_span)) // s), (hi + p) // s
        else:
            lo, hi = lo * s - p, hi * s - p + k_span
    return lo, hi


def _context_frames(encoder_convs, decoder_convs, hop):
    """Frames of context each side that make a chunk's codes and samples equal a whole-file pass."""
    lo, hi = _input_interval(encoder_convs, 0, 0)  # samples that frame 0's latent depends on
    enc = math.ceil(max(-lo, hi - hop + 1, 0) / hop)
    lo, hi = _input_interval(decoder_convs, 0, hop - 1)  # frames that frame 0's samples depend on
    return max(enc, -lo, hi, 0)


@register
class MLAudioEncoder(keras.Model):
    """The neural audio codec generator (DAC's encoder → RVQ → decoder), trained as a GAN.

    Use :meth:`from_preset` for the shipped configurations. ``encode``/``decode`` are the tensor-level API,
    ``compress``/``decompress`` the file-level one.
    """

    def __init__(
        self,
        sample_rate=44100,
        encoder_dim=64,
        encoder_rates=(2, 4, 8, 8),
        latent_dim=None,
        decoder_dim=1536,
        decoder_rates=(8, 8, 4, 2),
        n_codebooks=9,
        codebook_size=1024,
        codebook_dim=8,
        quantizer_dropout=0.0,
        preset="custom",
        **kwargs,
    ):
        super().__init__(**kwargs)
        encoder_rates, decoder_rates = [int(r) for r in encoder_rates], [int(r) for r in decoder_rates]
        if math.prod(encoder_rates) != math.prod(decoder_rates):
            raise ValueError(f"encoder rates {encoder_rates} and decoder rates {decoder_rates} differ in hop")
        if latent_dim is None:
            latent_dim = encoder_dim * 2 ** len(encoder_rates)
        self.sample_rate = int(sample_rate)
        self.encoder_dim = int(encoder_dim)
        self.encoder_rates = encoder_rates
        self.latent_dim = int(latent_dim)
        self.decoder_dim = int(decoder_dim)
        self.decoder_rates = decoder_rates
        self.n_codebooks = int(n_codebooks)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = codebook_dim
        self.quantizer_dropout = float(quantizer_dropout)
        self.preset = str(preset)
        self.hop_length = math.prod(encoder_rates)

        self.encoder = Encoder(self.encoder_dim, encoder_rates, self.latent_dim, name="encoder")
        self.quantizer = ResidualVectorQuantize(
            self.latent_dim, self.n_codebooks, self.codebook_size, codebook_dim, self.quantizer_dropout,
            name="quantizer",
        )
        self.decoder = Decoder(self.decoder_dim, decoder_rates, 1, name="decoder")
        self.build((None, None, 1))

    # -- construction -----------------------------------------------------------------------------------------
    def build(self, input_shape=(None, None, 1)):
        if self.built:
            return
        # Sub-layers infer channel counts from their input, so one tiny forward pass creates every weight.
        self.call(ops.zeros((1, self.hop_length, 1)))
        self.built = True

    @classmethod
    def from_preset(cls, name, pretrained=False, **overrides):
        """Build a preset architecture (see :mod:`ml_audio_encoder.models.presets`), optionally with shipped weights."""
        from . import presets

        return presets.load(name, pretrained=pretrained, **overrides)

    # -- bookkeeping ------------------------------------------------------------------------------------------
    @property
    def bits_per_code(self):
        return math.ceil(math.log2(self.codebook_size))

    @property
    def frame_rate(self):
        return self.sample_rate / self.hop_length

    def bitrate(self, n_quantizers=None):
        """Bits per second of the codes at ``n_quantizers`` levels (all by default)."""
        n = self.n_codebooks if n_quantizers is None else int(n_quantizers)
        return n * self.bits_per_code * self.frame_rate

    def get_output_length(self, input_length):
        """Samples out for ``input_length`` samples in (padding to whole frames)."""
        return math.ceil(input_length / self.hop_length) * self.hop_length

    @property
    def receptive_field(self):
        """Samples on each side of a position that can influence it through encoder and decoder.

        Chunked compression gives each chunk at least this much context so the chunk's codes and samples equal
        those of a whole-file pass (see :mod:`ml_audio_encoder.compress`).
        """
        return self.context_frames * self.hop_length

    @property
    def context_frames(self):
        """:attr:`receptive_field` in whole frames."""
        return _context_frames(_conv_layers(self.encoder), _conv_layers(self.decoder), self.hop_length)

    @property
    def delay(self):
        """DAC's delay: samples of zero-padding each side that an unpadded (valid) model would consume.

        Reported for parity with DAC. This codec keeps 'same' padding and chunks with context frames instead,
        which sends no code twice.
        """
        convs = _conv_layers(self.encoder) + _conv_layers(self.quantizer) + _conv_layers(self.decoder)
        length = 0.0
        for conv in convs:  # output length of a valid-mode pass of a 0-sample input, as DAC computes it
            d, k, s = conv.dilation_rate, conv.kernel_size, conv.strides
            if isinstance(conv, WNConvTranspose1d):
                length = math.floor((length - 1) * s + d * (k - 1) + 1)
            else:
                length = math.floor((length - d * (k - 1) - 1) / s + 1)
        out_len = length
        for conv in reversed(convs):
            d, k, s = conv.dilation_rate, conv.kernel_size, conv.strides
            if isinstance(conv, WNConvTranspose1d):
                length = math.ceil((length - d * (k - 1) - 1) / s + 1)
            else:
                length = math.ceil((length - 1) * s + d * (k - 1) + 1)
        return int((length - out_len) // 2)

    def fingerprint(self):
        """SHA-256 of the weights' shapes and float32 values, in model order.

        Names are left out on purpose: Keras numbers layers per process, so names differ between sessions and
        backends while the weights are the same.
        """
        digest = hashlib.sha256()
        for weight in self.weights:
            value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight), dtype="<f4")
            digest.update(str(value.shape).encode())
            digest.update(value.tobytes())
        return digest.hexdigest()

    # -- tensor API -------------------------------------------------------------------------------------------
    def preprocess(self, audio):
        """Right-pad ``(B, T, 1)`` audio with zeros to a whole number of frames."""
        length = audio.shape[1]
        if length is None:
            length = ops.shape(audio)[1]
            pad = (-length) % self.hop_length
        else:
            pad = (-length) % self.hop_length
            if pad == 0:
                return audio
        return ops.pad(audio, [[0, 0], [0, pad], [0, 0]])

    def encode(self, audio, n_quantizers=None, training=False):
        """``(B, T, 1)`` audio -> ``(z, codes, latents, commitment_loss, codebook_loss)``.

        ``codes`` is int32 ``(B, n_q, ceil(T / hop))``; ``z`` is the quantized latent the decoder takes.
        """
        z = self.encoder(self.preprocess(audio))
        return self.quantizer(z, n_quantizers=n_quantizers, training=training)

    def encode_codes(self, audio, n_quantizers=None):
        """``(B, T, 1)`` audio -> int32 codes ``(B, n_q, ceil(T / hop))``: what a file stores."""
        return self.encode(audio, n_quantizers, training=False)[1]

    def decode(self, z):
        """Quantized latent ``(B, frames, latent_dim)`` -> audio ``(B, frames · hop, 1)``."""
        return self.decoder(z)

    def decode_codes(self, codes):
        """Integer codes ``(B, n_q, frames)`` -> audio ``(B, frames · hop, 1)``."""
        return self.decode(self.quantizer.from_codes(codes)[0])

    def call(self, audio, n_quantizers=None, training=False):
        length = audio.shape[1]
        z, codes, latents, commitment_loss, codebook_loss = self.encode(audio, n_quantizers, training)
        out = self.decode(z)
        if length is not None:
            out = out[:, :length, :]
        return {
            "audio": out,
            "z": z,
            "codes": codes,
            "latents": latents,
            "vq/commitment_loss": commitment_loss,
            "vq/codebook_loss": codebook_loss,
        }

    # -- file API ---------------------------------------------------------------------------------------------
    def compress(self, audio_or_path, sample_rate=None, **kwargs):
        """Code a file or array into an :class:`~ml_audio_encoder.codec_file.MLAEFile` (see ``compress.compress``)."""
        from ..compress import compress

        return compress(self, audio_or_path, sample_rate=sample_rate, **kwargs)

    def decompress(self, mlae, **kwargs):
        """Decode an ``MLAEFile`` or ``.mlae`` path back to audio (see ``compress.decompress``)."""
        from ..compress import decompress

        return decompress(self, mlae, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "sample_rate": self.sample_rate,
            "encoder_dim": self.encoder_dim,
            "encoder_rates": self.encoder_rates,
            "latent_dim": self.latent_dim,
            "decoder_dim": self.decoder_dim,
            "decoder_rates": self.decoder_rates,
            "n_codebooks": self.n_codebooks,
            "codebook_size": self.codebook_size,
            "codebook_dim": self.codebook_dim,
            "quantizer_dropout": self.quantizer_dropout,
            "preset": self.preset,
        }
