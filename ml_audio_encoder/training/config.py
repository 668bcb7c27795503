"""Training configs (YAML with ``base:`` inheritance and ``key.sub=value`` overrides) and what they build: the
generator, the discriminator, the compiled :class:`~.trainer.CodecTrainer`, the training batches and the
validation clips. Shared by ``train/train.py``, ``train/bench_step.py`` and the tests.
"""

from __future__ import annotations

import copy
import os

import yaml

from ..models.presets import PRESETS


def load_config(path, overrides=()):
    """Read a YAML config (``base:`` names another config file to start from) and apply ``key.sub=value`` pairs."""
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if "base" in config:
        base = load_config(os.path.join(os.path.dirname(path), config.pop("base")))
        config = _merge(base, config)
    for item in overrides:
        key, _, value = item.partition("=")
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _parse_value(value)
    return config


def _parse_value(text):
    # YAML 1.1 reads "1e-3" (no dot) as a string; on a command line that is always meant as a number.
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _merge(base, update):
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_generator(config):
    """The config's generator: preset ``config["preset"]`` with ``config["model"]`` overrides, random weights."""
    from ..models.codec import MLAudioEncoder

    name = config["preset"]
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return MLAudioEncoder(**{**PRESETS[name], **config.get("model", {})}, preset=name)


def build(config, start_step=0, warmup_steps=0):
    """Generator, discriminator and compiled trainer from a config dict.

    ``start_step``/``warmup_steps``: the learning rate ramps up over ``warmup_steps`` from ``start_step`` (a run
    continued from weights without optimizer moments, see ``training/state.py``).
    """
    from .discriminator import Discriminator
    from .trainer import CodecTrainer, make_optimizer

    generator = build_generator(config)
    disc_conf = dict(config.get("discriminator", {}))
    disc_conf.setdefault("sample_rate", generator.sample_rate)
    discriminator = Discriminator(**disc_conf)
    discriminator.build((None, None, 1))
    opt = config.get("optim", {})
    betas = tuple(opt.get("betas", (0.8, 0.99)))
    gamma, wd = opt.get("gamma", 0.999996), opt.get("weight_decay", 0.01)
    # A warm restart: the decay counts from step decay_from, and again every restart_every steps after it.
    restart = dict(decay_from=int(opt.get("decay_from", 0)), restart_every=int(opt.get("restart_every", 0)))
    trainer = CodecTrainer(generator, discriminator, adversarial=True)
    trainer.compile(
        g_optimizer=make_optimizer(opt.get("lr", 1e-4), betas, gamma, wd, opt.get("g_clipnorm", 1000.0),
                                   start_step, warmup_steps, **restart),
        d_optimizer=make_optimizer(opt.get("d_lr", opt.get("lr", 1e-4)), betas, gamma, wd,
                                   opt.get("d_clipnorm", 10.0), start_step, warmup_steps, **restart),
        loss_weights=config.get("loss_weights"),
        jit_compile=config.get("train", {}).get("jit_compile", "auto"),
    )
    return trainer


def training_phases(train_config, initial_epoch):
    """``(phases, adversarial_now)``: the ``(adversarial, end_epoch)`` phases left to run from ``initial_epoch``
    (the reconstruction-only warm-up of ``warmup_steps``, then the GAN phase up to ``epochs``) and whether the run is
    in the GAN phase at ``initial_epoch`` -- also when no epoch is left."""
    steps = train_config.get("steps_per_epoch", 500)
    warmup_epochs = -(-int(train_config.get("warmup_steps", 0)) // steps)
    epochs = train_config.get("epochs", 100)
    warmup_end = min(warmup_epochs, epochs)
    phases = [(False, warmup_end)] if initial_epoch < warmup_end else []
    if max(initial_epoch, warmup_end) < epochs:
        phases.append((True, epochs))
    return phases, initial_epoch >= warmup_epochs


def excerpt_samples(config, generator):
    """Training excerpt length in samples: ``data.excerpt_seconds`` rounded to whole frames."""
    hop = generator.hop_length
    return int(round(config["data"].get("excerpt_seconds", 0.38) * generator.sample_rate / hop)) * hop


def make_data(config, generator):
    """``(train batches, validation set)`` of a config."""
    from . import data as D

    dc, tc = config["data"], config.get("train", {})
    excerpt = excerpt_samples(config, generator)
    train = D.AudioDataset(
        dc["source"], generator.sample_rate, excerpt_samples=excerpt, batch_size=dc.get("batch_size", 16),
        steps_per_epoch=tc.get("steps_per_epoch", 500), seed=tc.get("seed", 0),
        split=dc.get("train_split", "train"), domains=dc.get("domains"), preload=dc.get("preload", True),
        workers=dc.get("workers", 2), max_queue_size=dc.get("max_queue_size", 16),
        full_band_weight=dc.get("full_band_weight", 1.0), progress=True, silence=dc.get("silence", 0.0),
    )
    val = D.build_validation_set(
        dc.get("val_source", dc["source"]), generator.sample_rate, excerpt_samples=dc.get("val_excerpt", excerpt * 4),
        n_per_domain=dc.get("val_per_domain", 8), split=dc.get("val_split", "dev"), domains=dc.get("domains"),
    )
    return train, val
