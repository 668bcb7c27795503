"""GAN training with ``CodecTrainer.fit``: every weight trains, on TensorFlow, JAX and under MirroredStrategy; the
mel-only warm-up leaves the discriminator alone; checkpoints resume exactly; evaluation metrics; the NaN guard.

Everything uses the ``tiny_test`` generator, a tiny discriminator and 0.15 s excerpts. The in-process TensorFlow
tests run eagerly (``run_eagerly=True``): tracing the GAN step into a graph costs about a minute of CPU even for
this tiny model, and the Python step code is the same. The JAX and MirroredStrategy runs need their own processes
(the backend and the logical devices are fixed when a process starts); both are started when this module's first
test starts and run alongside the in-process tests.
"""

import json
import math
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
from conftest import sweep

from ml_audio_encoder.training import losses as L
from ml_audio_encoder.training.callbacks import CheckpointCallback, Checkpointer, NaNGuard, StopAfter
from ml_audio_encoder.training.config import build, load_config
from ml_audio_encoder.training.trainer import DEFAULT_LOSS_WEIGHTS, CodecTrainer

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train", "conf")
# What a GAN train step logs with the default loss weights: unweighted optional terms (stft, waveform_l1, phase)
# are not computed in training.
GAN_STEP_LOGS = set(CodecTrainer.TRAIN_METRICS) - set(CodecTrainer.OPTIONAL_TERMS) | {"codes/used"}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
T = 2400  # 0.15 s, 60 frames of the tiny_test generator

# The smoke config made smaller still: a tiny discriminator, a learning rate that moves every weight visibly, and no
# weight decay (AdamW's decay alone would change every weight and hide a missing gradient).
TINY = [
    "discriminator.periods=[2, 3]",
    "discriminator.fft_sizes=[256, 128]",
    "discriminator.width_scale=0.125",
    "optim.lr=1e-3",
    "optim.weight_decay=0.0",
    "train.jit_compile=false",
]


def tiny_trainer(*overrides, seed=0):
    keras.utils.set_random_seed(seed)
    trainer = build(load_config(os.path.join(CONF_DIR, "smoke.yml"), TINY + list(overrides)))
    trainer.run_eagerly = True
    return trainer


def audio(n=4, seed=0):
    rng = np.random.RandomState(seed)
    clips = [sweep(T / SR, SR, f0=80.0 * (i + 1), f1=6000.0, amp=0.3 + 0.1 * i) for i in range(n)]
    x = np.stack(clips)[..., None] + rng.randn(n, T, 1).astype("float32") * 0.01
    return x.astype("float32")


def arrays(variables):
    return [np.array(v.numpy() if hasattr(v, "numpy") else v) for v in variables]


def unchanged(variables, before):
    return [v.path for v, b in zip(variables, before) if np.array_equal(np.asarray(v.numpy()), b)]


def iterations(optimizer):
    return int(np.asarray(optimizer.iterations.numpy()))


# -- subprocesses: JAX and MirroredStrategy ----------------------------------------------------------------------

_PRELUDE = f"""
import json, os, sys, tempfile
import numpy as np, keras
from ml_audio_encoder.training.callbacks import CheckpointCallback, Checkpointer, NaNGuard
from ml_audio_encoder.training.config import build, load_config
CONF_DIR = os.path.join({ROOT!r}, 'train', 'conf')
TINY = {TINY!r}
T = {T}

def audio(n, seed=0):
    t = np.arange(T) / 16000
    rng = np.random.RandomState(seed)
    return np.stack([0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t) + 0.01 * rng.randn(T) for i in range(n)])[
        ..., None].astype("float32")

def arrays(variables):
    return [np.array(v.numpy()) for v in variables]

def unchanged(variables, before):
    return [v.path for v, b in zip(variables, before) if np.array_equal(np.asarray(v.numpy()), b)]

def nonfinite(variables):
    return [v.path for v in variables if not np.isfinite(np.asarray(v.numpy())).all()]

def iterations(optimizer):
    return int(np.asarray(optimizer.iterations.numpy()))
"""

# JAX: one fit step (XLA-compiled, as always under JAX) on a one-block generator and a one-period, one-STFT
# discriminator (compiling the GAN step is what costs here), then a checkpoint restored into a fresh trainer.
_JAX_SCRIPT = _PRELUDE + """
overrides = TINY + ["model.encoder_rates=[8]", "model.decoder_rates=[8]", "discriminator.periods=[2]",
                    "discriminator.fft_sizes=[128]", "discriminator.bands=[[0.0, 0.5], [0.5, 1.0]]",
                    "train.jit_compile=true"]
config = load_config(os.path.join(CONF_DIR, "smoke.yml"), overrides)
keras.utils.set_random_seed(0)
t = build(config)
g_before, d_before = arrays(t.generator.trainable_variables), arrays(t.discriminator.trainable_variables)
ckdir = tempfile.mkdtemp()
history = t.fit(audio(4), batch_size=4, epochs=1, shuffle=False, verbose=0,
                callbacks=[NaNGuard(), CheckpointCallback(Checkpointer(ckdir, t))])
out = {
    "backend": keras.backend.backend(),
    "history": {k: float(v[-1]) for k, v in history.history.items()},
    "g_unchanged": unchanged(t.generator.trainable_variables, g_before),
    "d_unchanged": unchanged(t.discriminator.trainable_variables, d_before),
    "nonfinite": nonfinite(t.trainable_variables),
    "iterations": [iterations(t.g_optimizer), iterations(t.d_optimizer)],
}
keras.utils.set_random_seed(1)
fresh = build(config)
record = Checkpointer(ckdir, fresh).restore()
out["restored_step"] = record["step"]
out["restored_iterations"] = iterations(fresh.g_optimizer)
pairs = [(fresh.generator.weights, t.generator.weights), (fresh.discriminator.weights, t.discriminator.weights),
         (fresh.optimizer.variables, t.optimizer.variables)]
out["restored_equal"] = [all(np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy())) for a, b in zip(x, y))
                         and len(x) == len(y) for x, y in pairs]
print("RESULT " + json.dumps(out))
"""

# MirroredStrategy over two logical CPUs: the trainer is built in the strategy's scope (as train.py
# --distribute mirrored does) and fit one step on a global batch of 4 (2 per replica) from a tf.data.Dataset. With
# plain SGD and no quantizer dropout the update must equal the single-device update on the same 4 clips: each
# replica differentiates its share of the global mean loss and the optimizer sums over replicas. (AdamW's first
# step is nearly sign(gradient), blind to a wrongly scaled loss; SGD is not.)
_MIRRORED_SCRIPT = _PRELUDE + """
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = load_config(os.path.join(CONF_DIR, "smoke.yml"),
                     TINY + ["discriminator.periods=[2]", "discriminator.fft_sizes=[128]",
                             "model.quantizer_dropout=0.0"])
x = audio(5)
ds = tf.data.Dataset.from_tensor_slices(x).batch(4, drop_remainder=True)  # one step; the 5th clip is dropped

def run(scope):
    keras.utils.set_random_seed(0)
    with scope:
        t = build(config)
        t.compile(g_optimizer=keras.optimizers.SGD(0.05), d_optimizer=keras.optimizers.SGD(0.05))
    t.run_eagerly = True
    before = arrays(t.trainable_variables)
    ckdir = tempfile.mkdtemp()
    history = t.fit(ds, epochs=1, verbose=0, callbacks=[NaNGuard(), CheckpointCallback(Checkpointer(ckdir, t))])
    return t, before, history, Checkpointer(ckdir, t).read_pointer()

t, before, history, record = run(strategy.scope())
replicas_in_sync = all(np.array_equal(np.asarray(v.value.values[0]), np.asarray(v.value.values[1]))
                       for v in t.trainable_variables)
mirrored_delta = [a - b for a, b in zip(arrays(t.trainable_variables), before)]
out = {
    "replicas": strategy.num_replicas_in_sync,
    "variable_type": type(t.generator.trainable_variables[0].value).__name__,
    "history": {k: float(v[-1]) for k, v in history.history.items()},
    "unchanged": unchanged(t.trainable_variables, before),
    "nonfinite": nonfinite(t.trainable_variables),
    "replicas_in_sync": bool(replicas_in_sync),
    "iterations": [iterations(t.g_optimizer), iterations(t.d_optimizer)],
    "checkpoint_step": record and record["step"],
}
single, before, single_history, _ = run(tf.distribute.get_strategy().scope())
out["single_history"] = {k: float(v[-1]) for k, v in single_history.history.items()}
single_delta = [a - b for a, b in zip(arrays(single.trainable_variables), before)]
worst = 0.0
for m, s in zip(mirrored_delta, single_delta):
    scale = float(np.abs(s).max()) + 1e-12
    worst = max(worst, float(np.abs(m - s).max()) / scale)
out["update_mismatch"] = worst
print("RESULT " + json.dumps(out))
"""

_SCRIPTS = {
    "test_jax_fit_step_updates_every_weight_and_checkpoints": (_JAX_SCRIPT, {
        "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
        # Faster XLA:CPU compilation of the one step (a third less); nothing here is timed.
        "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                      " --xla_llvm_disable_expensive_passes=true").strip(),
    }),
    "test_mirrored_strategy_on_two_logical_cpus": (_MIRRORED_SCRIPT, {"KERAS_BACKEND": "tensorflow"}),
}


@pytest.fixture(scope="module", autouse=True)
def subprocess_runs(request, tmp_path_factory):
    """Start the subprocess runs of the selected tests at once, so that they overlap with the in-process tests."""
    selected = {item.name for item in request.session.items}
    folder = tmp_path_factory.mktemp("trainer_subprocesses")
    runs = {}
    for name, (script, env) in _SCRIPTS.items():
        if name not in selected:
            continue
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
        log = open(folder / f"{name}.log", "w+")  # noqa: SIM115 (closed at teardown)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT)
        runs[name] = (proc, log)
    yield runs
    for proc, log in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _result(runs, name, timeout=600):
    proc, log = runs[name]
    proc.wait(timeout=timeout)
    log.seek(0)
    output = log.read()
    assert proc.returncode == 0, output[-4000:]
    line = [ln for ln in output.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# -- in-process TensorFlow ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _shared_trainer():
    t = tiny_trainer()
    variables = t.generator.variables + t.discriminator.variables + t.optimizer.variables
    return t, variables, arrays(variables)


def _reset(shared):
    t, variables, initial = shared
    for v, a in zip(variables, initial):
        v.assign(a)
    t.set_adversarial(True)
    t.train_function = t.test_function = None
    t.stop_training = False
    return t


@pytest.fixture
def trainer(_shared_trainer):
    """The module's trainer, put back to its freshly built state (building one costs seconds; resetting doesn't)."""
    return _reset(_shared_trainer)


@pytest.fixture(scope="module")
def gan_run(_shared_trainer, tmp_path_factory):
    """One GAN step of a 3-epoch run that train.py's ``--max-minutes`` limit stops after its first epoch (which is
    checkpointed); examined by the tests below."""
    t = _reset(_shared_trainer)
    directory = str(tmp_path_factory.mktemp("checkpoints"))
    before = {"g": arrays(t.generator.trainable_variables), "d": arrays(t.discriminator.trainable_variables)}
    iterations_before = (iterations(t.g_optimizer), iterations(t.d_optimizer))
    x, x_val = audio(), audio(2, seed=1)
    history = t.fit(x, batch_size=4, epochs=3, shuffle=False, verbose=0, validation_data=(x_val, x_val),
                    callbacks=[NaNGuard(), CheckpointCallback(Checkpointer(directory, t)), StopAfter(0)])
    return types.SimpleNamespace(
        trainer=t, directory=directory, history=history, before=before, iterations_before=iterations_before,
        g_vars=list(t.generator.trainable_variables), d_vars=list(t.discriminator.trainable_variables),
        after={"g": arrays(t.generator.trainable_variables), "d": arrays(t.discriminator.trainable_variables),
               "g_weights": arrays(t.generator.weights), "d_weights": arrays(t.discriminator.weights),
               "opt": arrays(t.optimizer.variables)},
        iterations=(iterations(t.g_optimizer), iterations(t.d_optimizer)),
    )


def _changed(before, after):
    return [not np.array_equal(b, a) for b, a in zip(before, after)]


def test_tensorflow_fit_step_updates_every_weight(gan_run):
    run = gan_run
    assert keras.backend.backend() == "tensorflow"
    t = run.trainer
    assert len(run.g_vars) > 100 and len(run.d_vars) > 50
    assert len(t.trainable_variables) == len(run.g_vars) + len(run.d_vars)
    assert run.iterations_before == (0, 0) and run.iterations == (1, 1)
    assert run.history.epoch == [0]  # stopped after the first epoch, like train.py --max-minutes
    unchanged_g = [v.path for v, c in zip(run.g_vars, _changed(run.before["g"], run.after["g"])) if not c]
    unchanged_d = [v.path for v, c in zip(run.d_vars, _changed(run.before["d"], run.after["d"])) if not c]
    assert unchanged_g == [] and unchanged_d == []
    assert all(np.isfinite(a).all() for a in run.after["g"] + run.after["d"] + run.after["opt"])
    logs = {k: v[-1] for k, v in run.history.history.items()}
    assert set(logs) == GAN_STEP_LOGS | {"val_" + k for k in CodecTrainer.TEST_METRICS}
    assert all(math.isfinite(v) for v in logs.values()), logs
    assert logs["loss/discriminator"] > 0 and logs["grad_norm/generator"] > 0 and logs["grad_norm/discriminator"] > 0
    # The generator's total is the weighted sum of its terms (unweighted ones are not even computed).
    expected = sum(w * logs[k] for k, w in DEFAULT_LOSS_WEIGHTS.items())
    assert logs["loss/generator"] == pytest.approx(expected, rel=1e-4)


def test_mel_only_mode_leaves_the_discriminator_unchanged(trainer):
    t = trainer
    t.make_train_function()
    assert t.train_function is not None
    t.set_adversarial(False)
    assert t.train_function is None  # the traced step baked the phase in: it is rebuilt
    d_before, g_before = arrays(t.discriminator.weights), arrays(t.generator.trainable_variables)
    history = t.fit(audio(), batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert all(np.array_equal(np.asarray(v.numpy()), b) for v, b in zip(t.discriminator.weights, d_before))
    assert iterations(t.d_optimizer) == 0 and iterations(t.g_optimizer) == 1
    assert all(not np.any(np.asarray(v.numpy())) for v in t.d_optimizer.variables)  # no moments either
    assert unchanged(t.generator.trainable_variables, g_before) == []
    assert not {"loss/discriminator", "grad_norm/discriminator", "adv/gen", "adv/feat"} & set(history.history)
    assert {"mel", "loss/generator", "vq/commitment", "vq/codebook"} <= set(history.history)
    t.set_adversarial(True)
    assert t.adversarial and t.train_function is None


def test_evaluate_reports_reconstruction_metrics(trainer):
    t = trainer
    x = audio()
    logs = t.evaluate(x, batch_size=4, verbose=0, return_dict=True)
    assert set(logs) == {"mel", "stft", "waveform_l1", "phase", "si_sdr"} == set(CodecTrainer.TEST_METRICS)
    y = t.generator(x, training=False)["audio"]
    assert logs["mel"] == pytest.approx(float(L.MelSpectrogramLoss(sample_rate=SR)(x, y)), rel=1e-4)
    assert logs["stft"] == pytest.approx(float(L.MultiScaleSTFTLoss()(x, y)), rel=1e-4)
    assert logs["waveform_l1"] == pytest.approx(float(np.mean(np.abs(np.asarray(y) - x))), rel=1e-4)
    assert logs["si_sdr"] == pytest.approx(float(np.mean(np.asarray(L.si_sdr(x, y)))), rel=1e-4, abs=1e-3)
    # test_step itself, on one batch.
    assert set(t.test_step(x)) == set(CodecTrainer.TEST_METRICS)


def test_generator_loss_is_the_weighted_sum_of_its_terms(trainer):
    t = trainer
    x = audio(2)
    out = t.generator(x, training=True)
    d_fake, d_real = t.discriminator(out["audio"]), t.discriminator(x)
    t.loss_weights = {**DEFAULT_LOSS_WEIGHTS, "mel": 1.0, "waveform_l1": 3.0}
    try:
        total, terms = t._generator_losses(x, out, d_fake, d_real)
    finally:
        t.loss_weights = dict(DEFAULT_LOSS_WEIGHTS)
    assert set(terms) == {"mel", "waveform_l1", "vq/commitment", "vq/codebook", "adv/gen", "adv/feat"}
    expected = (float(terms["mel"]) + 3 * float(terms["waveform_l1"]) + 2 * float(terms["adv/feat"])
                + float(terms["adv/gen"]) + 0.25 * float(terms["vq/commitment"]) + float(terms["vq/codebook"]))
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_checkpoint_resumes_step_optimizer_state_and_weights(gan_run):
    """The checkpoint written mid-run restores, into a freshly built trainer, the step, both optimizers' state and
    every weight."""
    checkpointer = Checkpointer(gan_run.directory, gan_run.trainer)
    latest = checkpointer.read_pointer("latest")
    assert latest["step"] == 1 and latest["epoch"] == 1 and math.isfinite(latest["val_mel"])
    assert checkpointer.read_pointer("best")["folder"] == latest["folder"]  # val_mel improved on infinity
    saved = gan_run.after
    assert any(np.abs(v).sum() > 0 for v in saved["opt"][1:])  # Adam's moments, not just zeros

    b = tiny_trainer(seed=1)  # freshly built, other initial weights: equality below comes from the checkpoint
    assert not all(np.array_equal(w.numpy(), s) for w, s in zip(b.generator.weights, saved["g_weights"]))
    assert iterations(b.optimizer) == 0
    record = Checkpointer(gan_run.directory, b).restore()
    assert record["step"] == 1 and record["epoch"] == 1
    assert iterations(b.optimizer) == iterations(b.g_optimizer) == iterations(b.d_optimizer) == 1
    for variables, expected in ((b.generator.weights, saved["g_weights"]),
                                (b.discriminator.weights, saved["d_weights"]),
                                (b.optimizer.variables, saved["opt"])):
        assert len(variables) == len(expected)
        for v, e in zip(variables, expected):
            np.testing.assert_array_equal(np.asarray(v.numpy()), e, err_msg=v.path)


def test_nan_guard_stops_training_with_a_clear_message(trainer, tmp_path):
    t = trainer
    t.set_adversarial(False)
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"), t)
    x = audio()
    x[1, 100:200] = np.nan
    with pytest.raises(FloatingPointError, match=r"non-finite .* at batch 0: training stopped"):
        t.fit(x, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[NaNGuard(), CheckpointCallback(checkpointer)])
    assert t.stop_training
    assert checkpointer.read_pointer("latest") is None  # nothing poisoned was saved


def test_nan_guard_names_the_term_and_ignores_finite_or_non_numeric_logs():
    guard = NaNGuard()
    guard.set_model(types.SimpleNamespace(stop_training=False))
    guard.on_train_batch_end(0, {"mel": 1.5, "loss/generator": np.float32(3.0), "note": "text", "none": None})
    assert not guard.model.stop_training
    with pytest.raises(FloatingPointError, match=r"non-finite loss/generator = inf at batch 7.*--resume"):
        guard.on_train_batch_end(7, {"mel": 1.0, "loss/generator": float("inf")})
    assert guard.model.stop_training


# -- subprocess runs ---------------------------------------------------------------------------------------------


def test_jax_fit_step_updates_every_weight_and_checkpoints(subprocess_runs):
    out = _result(subprocess_runs, "test_jax_fit_step_updates_every_weight_and_checkpoints")
    assert out["backend"] == "jax"
    assert out["g_unchanged"] == [] and out["d_unchanged"] == []
    assert out["nonfinite"] == []
    assert out["iterations"] == [1, 1]
    assert set(out["history"]) == GAN_STEP_LOGS
    assert all(math.isfinite(v) for v in out["history"].values()), out["history"]
    assert out["restored_step"] == 1 and out["restored_iterations"] == 1
    assert out["restored_equal"] == [True, True, True]


def test_mirrored_strategy_on_two_logical_cpus(subprocess_runs):
    out = _result(subprocess_runs, "test_mirrored_strategy_on_two_logical_cpus")
    assert out["replicas"] == 2 and out["variable_type"] == "MirroredVariable"
    assert out["unchanged"] == [] and out["nonfinite"] == []
    assert out["replicas_in_sync"]
    assert out["iterations"] == [1, 1] and out["checkpoint_step"] == 1
    assert all(math.isfinite(v) for v in out["history"].values()), out["history"]
    # Same update and same logged losses as one device on the whole batch. (The gradient norms are logged per
    # replica, of each replica's share.)
    assert out["update_mismatch"] < 1e-3, out["update_mismatch"]
    for name, value in out["single_history"].items():
        # (codes/used counts the codes of the step's own replica: each sees half the batch, so fewer codes.)
        if not name.startswith("grad_norm/") and name != "codes/used":
            assert out["history"][name] == pytest.approx(value, rel=1e-3), name
