"""Training the codec: losses, discriminators, the GAN train step for ``model.fit``, callbacks, configs, data."""
