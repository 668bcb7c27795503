"""Building blocks of the networks: layers from the papers, the residual vector quantizer, spectral helpers.

The bottom floor of the package: nothing here imports any other part of ``ml_audio_encoder``.
"""
