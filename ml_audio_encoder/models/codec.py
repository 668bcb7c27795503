"""The generator: encoder → residual vector quantizer → decoder, in two families that share every interface.

* ``encoder_type="conv"``, ``decoder_type="conv"``: DAC's strided Snake/weight-norm conv stacks (:mod:`.dac`).
* ``encoder_type="stft"``, ``decoder_type="istft"``: ConvNeXt blocks at the frame rate with an STFT front end and
  a Vocos iSTFT head (:mod:`.frame_rate`), ~7x cheaper to train per second of audio on a CPU.

Either encoder can pair with either decoder. Shapes are channels-last; the encoder gives ``frames = T / hop`` and
the decoder ``frames · hop`` samples; :meth:`MLAudioEncoder.preprocess` right-pads input to a multiple of the hop.
"""

from __future__ import annotations

import hashlib
import math

import keras
import numpy as np
from keras import ops

from ..nn.layers import WNConvTranspose1d, register
from ..nn.quantize import ResidualVectorQuantize
from .dac import Decoder, Encoder, conv_layers, input_interval
from .frame_rate import ISTFTDecoder, STFTEncoder

ENCODER_TYPES = ("conv", "stft")
DECODER_TYPES = ("conv", "istft")


def fingerprint_arrays(arrays):
    """SHA-256 of each array's shape and float32 little-endian values, in order.

    Names are left out on purpose: Keras numbers layers per process, so names differ between sessions and
    backends while the weights are the same.
    """
    digest = hashlib.sha256()
    for value in arrays:
        value = np.ascontiguousarray(value, dtype="<f4")
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


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
        encoder_type="conv",
        decoder_type="conv",
        convnext_dim=384,
        encoder_blocks=8,
        decoder_blocks=8,
        n_fft=None,
        phase_rotation=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if encoder_type not in ENCODER_TYPES or decoder_type not in DECODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES} and decoder_type one of {DECODER_TYPES}, "
                             f"got {encoder_type!r}, {decoder_type!r}")
        encoder_rates, decoder_rates = [int(r) for r in encoder_rates], [int(r) for r in decoder_rates]
        # The hop is the product of the encoder's strides; an STFT encoder or iSTFT decoder uses it as its hop, so
        # the rates of the conv side (if any) must agree.
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
        self.encoder_type, self.decoder_type = str(encoder_type), str(decoder_type)
        self.convnext_dim = int(convnext_dim)
        self.encoder_blocks, self.decoder_blocks = int(encoder_blocks), int(decoder_blocks)
        self.hop_length = math.prod(encoder_rates)
        self.n_fft = int(n_fft) if n_fft else 4 * self.hop_length
        self.phase_rotation = bool(phase_rotation)
        if self.phase_rotation and self.decoder_type != "istft":
            raise ValueError("phase_rotation applies to the iSTFT decoder (decoder_type='istft')")

        if self.encoder_type == "conv":
            self.encoder = Encoder(self.encoder_dim, encoder_rates, self.latent_dim, name="encoder")
        else:
            self.encoder = STFTEncoder(self.hop_length, self.n_fft, self.convnext_dim, self.encoder_blocks,
                                       self.latent_dim, name="encoder")
        self.quantizer = ResidualVectorQuantize(
            self.latent_dim, self.n_codebooks, self.codebook_size, codebook_dim, self.quantizer_dropout,
            name="quantizer",
        )
        if self.decoder_type == "conv":
            self.decoder = Decoder(self.decoder_dim, decoder_rates, 1, name="decoder")
        else:
            self.decoder = ISTFTDecoder(self.hop_length, self.n_fft, self.convnext_dim, self.decoder_blocks,
                                        self.phase_rotation, name="decoder")
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
        from .loading import build_preset

        return build_preset(name, pretrained=pretrained, model_class=cls, **overrides)

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
        hop = self.hop_length
        if self.encoder_type == "conv":
            lo, hi = input_interval(conv_layers(self.encoder), 0, 0)  # samples that frame 0's latent depends on
            enc = math.ceil(max(-lo, hi - hop + 1, 0) / hop)
        else:
            enc = self.encoder.context_frames
        if self.decoder_type == "conv":
            lo, hi = input_interval(conv_layers(self.decoder), 0, hop - 1)  # frames that frame 0's samples use
            dec = max(-lo, hi, 0)
        else:
            dec = self.decoder.context_frames
        return max(enc, dec, 0)

    @property
    def frame_period(self):
        """Decoding in pieces must start pieces on multiples of this many frames (the iSTFT head's phase rotation;
        1 for every other model)."""
        return getattr(self.decoder, "frame_period", 1)

    @property
    def delay(self):
        """DAC's delay: samples of zero-padding each side that an unpadded (valid) model would consume.

        Reported for parity with DAC. This codec keeps 'same' padding and chunks with context frames instead,
        which sends no code twice.
        """
        if self.encoder_type != "conv" or self.decoder_type != "conv":
            # Frame-rate models pad each STFT frame by (n_fft - hop) / 2 samples on each side ("same" framing).
            return (self.n_fft - self.hop_length) // 2
        convs = conv_layers(self.encoder) + conv_layers(self.quantizer) + conv_layers(self.decoder)
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

    def fingerprint(self, dtype=None):
        """SHA-256 of the weights' shapes and float32 values, in model order (see :func:`fingerprint_arrays`).

        ``dtype="float16"``: the fingerprint the weights will have once stored in float16 and loaded back.
        """
        arrays = [keras.ops.convert_to_numpy(w) for w in self.weights]
        if dtype is not None:
            arrays = [a.astype(dtype) for a in arrays]
        return fingerprint_arrays(arrays)

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
        from ..runtime.compress import compress

        return compress(self, audio_or_path, sample_rate=sample_rate, **kwargs)

    def decompress(self, mlae, **kwargs):
        """Decode an ``MLAEFile`` or ``.mlae`` path back to audio (see ``compress.decompress``)."""
        from ..runtime.compress import decompress

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
            "encoder_type": self.encoder_type,
            "decoder_type": self.decoder_type,
            "convnext_dim": self.convnext_dim,
            "encoder_blocks": self.encoder_blocks,
            "decoder_blocks": self.decoder_blocks,
            "n_fft": self.n_fft,
            "phase_rotation": self.phase_rotation,
        }
