"""Arrow-pointing experiment: smoke run with checkpoint/restore/continue, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from augpar.train import read_metrics
from experiments.arrow_pointing import train as ap_train
from experiments.arrow_pointing.configs import default

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smoke_two_steps_checkpoint_restore_continue(tmp_path, capsys):
    config = default.get_config("smoke")
    results = ap_train.train_and_evaluate(config, str(tmp_path))
    assert set(results["vit"]) == {"val", "val_ext"}
    assert all(0.0 <= a <= 1.0 for a in results["vit"].values())
    workdir = tmp_path / "vit"
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]
    out = capsys.readouterr().out
    assert "val_ext (extrapolation, 64 px)" in out and "summary.png" in out
    assert os.path.exists(tmp_path / "summary.png")
    assert json.load(open(tmp_path / "results.json"))["num_steps"] == {"vit": 2}

    config.num_steps = 4  # continue the same run
    ap_train.train_and_evaluate(config, str(tmp_path))
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["2", "4"]
    steps = [r["step"] for r in read_metrics(str(workdir)) if "train/loss" in r]
    assert steps == [1, 2, 3, 4]


def test_unknown_model_is_rejected(tmp_path):
    config = default.get_config("smoke")
    config.models = "vit,resnet"
    with pytest.raises(ValueError, match=r"Unknown models \['resnet'\]"):
        ap_train.train_and_evaluate(config, str(tmp_path))


def _launch(workdir, arg):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [
        sys.executable,
        "-m",
        "experiments.arrow_pointing.main",
        f"--config={ROOT}/experiments/arrow_pointing/configs/default.py:{arg}",
        f"--workdir={workdir}",
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _final_params(workdir, step):
    path = os.path.join(workdir, "vit", "checkpoints", str(step), "default")
    restored = ocp.StandardCheckpointer().restore(path)
    return [np.asarray(x) for x in jax.tree.leaves(restored)]


@pytest.mark.slow
def test_resume_after_kill_9_is_bit_identical(tmp_path):
    arg = "smoke,num_steps=300,checkpoint_every=20,log_every=10"
    killed, full = tmp_path / "killed", tmp_path / "full"
    proc = _launch(killed, arg)
    ckpts = killed / "vit" / "checkpoints"
    deadline = time.time() + 240
    while not (ckpts / "60").exists():
        assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
        assert time.time() < deadline, "no checkpoint 60 within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (ckpts / "300").exists()

    resumed = _launch(killed, arg)
    uninterrupted = _launch(full, arg)
    for p in (resumed, uninterrupted):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    a, b = _final_params(killed, 300), _final_params(full, 300)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    steps = [r["step"] for r in read_metrics(str(killed / "vit")) if "train/loss" in r]
    assert steps == list(range(10, 301, 10))  # the resumed log has no gaps or repeats


@pytest.mark.slow
def test_lazy_training_data_path(tmp_path):
    """The gpu variant renders training images on demand through grain; same harness."""
    config = default.get_config("smoke")
    config.data.lazy_train = True
    config.num_steps = 1
    results = ap_train.train_and_evaluate(config, str(tmp_path))
    assert set(results["vit"]) == {"val", "val_ext"}
    assert default.get_config("gpu").data.lazy_train


@pytest.mark.slow
def test_plstm_smoke_two_steps(tmp_path, capsys):
    # Resume/continue of the shared harness is covered by the ViT smoke test above.
    config = default.get_config("smoke")
    config.models = "plstm"
    results = ap_train.train_and_evaluate(config, str(tmp_path))
    assert set(results) == {"plstm"} and set(results["plstm"]) == {"val", "val_ext"}
    assert all(0.0 <= a <= 1.0 for a in results["plstm"].values())
    workdir = tmp_path / "plstm"
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]
    assert "plstm" in capsys.readouterr().out
    steps = [r["step"] for r in read_metrics(str(workdir)) if "train/loss" in r]
    assert steps == [1, 2]


def test_cpu_config_trains_vit_and_plstm():
    config = default.get_config("cpu")
    models = [m.strip() for m in config.models.split(",")]
    assert models == ["vit", "plstm"] and all(m in ap_train.MODEL_BUILDERS for m in models)


def test_input_scalings_and_unknown_scaling(tmp_path):
    """unit (the paper's [0, 1], white 1), symmetric [-1, 1], ink (background 0); gray input is
    repeated to 3 channels. An unknown scaling stops train_and_evaluate before any data or
    training (no model directory written)."""
    import jax.numpy as jnp

    px = jnp.asarray([[[[255, 0, 51]]]], jnp.uint8)
    np.testing.assert_allclose(ap_train.normalize(px), [[[[1.0, 0.0, 0.2]]]], rtol=1e-6)
    np.testing.assert_allclose(ap_train.normalize(px, "symmetric"), [[[[1.0, -1.0, -0.6]]]],
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(ap_train.normalize(px, "ink"), [[[[0.0, 1.0, 0.8]]]], rtol=1e-6)
    gray = ap_train.normalize(jnp.full((2, 4, 4, 1), 51, jnp.uint8))
    assert gray.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(gray, 0.2, rtol=1e-6)
    assert default.get_config("cpu").data.scaling == "unit"
    config = default.get_config("smoke,data.scaling=negative")
    allowed = r"input scaling 'negative'; allowed: \('unit', 'symmetric', 'ink'\)"
    with pytest.raises(ValueError, match=allowed):
        ap_train.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "vit")


def test_probes_change_one_thing_each_and_tabulate(tmp_path):
    import json

    from experiments.arrow_pointing import probes

    base = default.get_config("cpu")
    for name, probe in probes.PROBES.items():
        config = probes.probe_config(name, steps=7, eval_every=3, seed=2)
        assert config.models == probe.model and config.seed == 2
        assert config.model_steps[probe.model] == 7 and config.eval_every == 3
        changed = {k for k in ("vit", "plstm", "data") if config[k] != base[k]}
        assert changed <= {"vit", "plstm", "data"} and (bool(changed) == bool(probe.overrides))
    with pytest.raises(ValueError, match="unknown probe 'vit_big'"):
        probes.probe_config("vit_big", steps=0, eval_every=1, seed=0)
    # Curves come from the run's metrics.jsonl: loss logged up to each eval, accuracies in %.
    records = [
        {"step": 1, "train/loss": 0.7},
        {"step": 2, "train/loss": 0.6, "eval/val/accuracy": 0.625, "eval/val_ext/accuracy": 0.5},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    points = probes.curve(str(tmp_path))
    assert points == [{"step": 2, "loss": 0.6, "val": 62.5, "val_ext": 50.0}]
    table = probes.markdown({"vit": points})
    assert "| `vit` |" in table and "0.600 / 62.5" in table and table.rstrip().endswith("50.0 |")
