"""The codec networks (DAC-style and frame-rate) assembled from :mod:`ml_audio_encoder.nn`, and their presets."""
