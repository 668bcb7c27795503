"""train/train.py's config handling: ``base:`` inheritance and command-line overrides."""

import os

from ml_audio_encoder.training.config import load_config

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train", "conf")


def test_small_config_inherits_thesis_hyper_parameters_and_overrides_parse():
    config = load_config(os.path.join(CONF_DIR, "small_24khz.yml"),
                         ["optim.lr=1e-3", "data.batch_size=4", "train.name_tag=x", "optim.betas=[0.5, 0.9]"])
    assert config["preset"] == "small_24khz"
    assert config["optim"]["lr"] == 1e-3 and isinstance(config["optim"]["lr"], float)  # YAML 1.1 reads "1e-3" as str
    assert config["data"]["batch_size"] == 4 and config["train"]["name_tag"] == "x"
    assert config["optim"]["betas"] == [0.5, 0.9]
    assert config["loss_weights"]["mel"] == 15.0  # from thesis_44khz.yml
    assert config["discriminator"]["periods"] == [2, 3, 5, 7, 11]


def test_every_shipped_config_loads():
    for name in os.listdir(CONF_DIR):
        if name.endswith(".yml"):
            config = load_config(os.path.join(CONF_DIR, name))
            assert {"preset", "data", "optim", "train"} <= set(config), name


def test_training_phases_know_the_phase_with_no_epoch_left():
    """The phase a run is in at its starting epoch, also when the schedule has no epoch left (a continued run at
    its last epoch must not save an untrained discriminator as adversarial)."""
    from ml_audio_encoder.training.config import training_phases

    cpu = {"steps_per_epoch": 50, "epochs": 1000, "warmup_steps": 100_000_000}  # reconstruction only
    assert training_phases(cpu, 894) == ([(False, 1000)], False)
    assert training_phases(cpu, 1000) == ([], False)
    gan = {"steps_per_epoch": 50, "epochs": 100, "warmup_steps": 1000}  # 20 warm-up epochs, then the GAN
    assert training_phases(gan, 0) == ([(False, 20), (True, 100)], False)
    assert training_phases(gan, 20) == ([(True, 100)], True)
    assert training_phases(gan, 100) == ([], True)
