"""Training loop: checkpoints and resume, corrupted-checkpoint fallback, NaN guard, sharding."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from augpar.parallel import make_mesh
from augpar.train import (
    Checkpointer,
    LoopConfig,
    NonFiniteLossError,
    classification_eval,
    classification_loss,
    read_metrics,
    train,
)


class TinyNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.l2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x, train=False):
        return self.l2(jax.nn.relu(self.bn(self.l1(x), use_running_average=not train)))


DATA_X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
DATA_Y = (DATA_X[:, 0] > 0).astype(np.int32) + (DATA_X[:, 1] > 1).astype(np.int32)


def batch_fn(step, nan_from=None):
    rng = np.random.default_rng(step)  # a pure function of the step
    idx = rng.choice(64, size=16, replace=False)
    x = DATA_X[idx].copy()
    if nan_from is not None and step >= nan_from:
        x[:] = np.nan
    return {"x": x, "label": DATA_Y[idx]}


def run(workdir, num_steps, mesh, *, checkpoint_every=2, nan_from=None, evals=True, tx=None):
    loss = classification_loss(lambda m, b, rng: m(b["x"], train=True))
    evalf = classification_eval(lambda m, b: m(b["x"]))
    eval_sets = {"all": lambda: [{"x": DATA_X, "label": DATA_Y}]} if evals else None
    return train(
        workdir=str(workdir),
        model=TinyNet(nnx.Rngs(0)),
        tx=tx or optax.adam(1e-2),
        loss_fn=loss,
        eval_fn=evalf,
        train_batch_fn=lambda s: batch_fn(s, nan_from),
        global_batch_size=16,
        eval_sets=eval_sets,
        loop=LoopConfig(
            num_steps=num_steps, log_every=1, checkpoint_every=checkpoint_every, progress=False
        ),
        mesh=mesh,
        seed=0,
        config={"num_steps": num_steps},
    )


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


@pytest.fixture(scope="module")
def mesh8():
    return make_mesh({"data": 8})


def test_resume_is_bit_identical_and_outputs_written(tmp_path, mesh8):
    full = run(tmp_path / "full", 6, mesh8)
    part = run(tmp_path / "part", 3, mesh8, checkpoint_every=3)
    assert part.resumed_from is None
    resumed = run(tmp_path / "part", 6, mesh8)
    assert resumed.resumed_from == 3
    for a, b in zip(leaves(full.state), leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    # BatchNorm statistics (non-Param state) were trained and carried through the checkpoint.
    assert not np.allclose(np.asarray(full.state.rest["bn"]["mean"][...]), 0.0)
    records = read_metrics(tmp_path / "part")
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # no duplicated steps after the resume
    assert "eval/all/accuracy" in records[-1]
    for name in ("config.json", "curves.png", "metrics.jsonl", "tensorboard"):
        assert os.path.exists(tmp_path / "part" / name), name
    assert json.load(open(tmp_path / "part" / "config.json")) == {"num_steps": 6}
    assert full.eval_metrics["all"]["count"] == 64


def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path, mesh8, caplog):
    run(tmp_path, 4, mesh8)  # checkpoints at 2 and 4
    ckpt_dir = tmp_path / "checkpoints" / "4"
    for root, _, files in os.walk(ckpt_dir):
        for f in files:
            with open(os.path.join(root, f), "r+b") as fh:
                fh.truncate(0)
    with caplog.at_level("WARNING"):
        result = run(tmp_path, 4, mesh8)
    assert result.resumed_from == 2
    assert any("Checkpoint 4 could not be restored" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "corrupt_checkpoints" / "4").exists()
    assert sorted(Checkpointer(str(tmp_path)).all_steps()) == [2, 4]  # step 4 written again


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, mesh8):
    with pytest.raises(NonFiniteLossError, match="at step 6") as info:
        run(tmp_path, 10, mesh8, nan_from=5, evals=False)
    assert info.value.step == 6 and info.value.last_checkpoint == 4
    ckpt = Checkpointer(str(tmp_path))
    assert ckpt.all_steps() == [2, 4]
    ckpt.close()
    # The surviving checkpoint restores and is finite.
    again = run(tmp_path, 4, mesh8, evals=False)
    assert again.resumed_from == 4
    assert all(np.isfinite(x).all() for x in leaves(again.state.params))


def test_sharded_training_matches_single_device(tmp_path, mesh8):
    one = make_mesh({"data": 1}, devices=jax.devices()[:1])
    # SGD: Adam would blow up round-off in the (BatchNorm-cancelled) first-layer bias gradients.
    a = run(tmp_path / "a", 3, mesh8, evals=False, tx=optax.sgd(0.1))
    b = run(tmp_path / "b", 3, one, evals=False, tx=optax.sgd(0.1))
    for x, y in zip(leaves(a.state.params), leaves(b.state.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)  # only reduction order differs


def test_eval_split_without_eval_fn_raises(tmp_path, mesh8):
    with pytest.raises(ValueError, match="without an eval_fn"):
        train(
            workdir=str(tmp_path),
            model=TinyNet(nnx.Rngs(0)),
            tx=optax.sgd(0.1),
            loss_fn=classification_loss(lambda m, b, r: m(b["x"])),
            train_batch_fn=batch_fn,
            global_batch_size=16,
            eval_sets={"x": list},
            loop=LoopConfig(num_steps=1),
            mesh=mesh8,
            seed=0,
        )


def test_loop_config_validates():
    with pytest.raises(ValueError, match="num_steps must be >= 1; got 0"):
        LoopConfig(num_steps=0)
    with pytest.raises(ValueError, match="eval_every must be >= 0; got -1"):
        LoopConfig(num_steps=1, eval_every=-1)


def test_batch_not_divisible_by_data_parallel_size(tmp_path, mesh8):
    with pytest.raises(
        ValueError, match="Global batch size 12 is not divisible by the data-parallel size 8"
    ):
        train(
            workdir=str(tmp_path),
            model=TinyNet(nnx.Rngs(0)),
            tx=optax.sgd(0.1),
            loss_fn=classification_loss(lambda m, b, r: m(b["x"])),
            train_batch_fn=batch_fn,
            global_batch_size=12,
            loop=LoopConfig(num_steps=1),
            mesh=mesh8,
            seed=0,
        )


def test_soft_label_loss_matches_hard_labels():
    loss_hard = classification_loss(lambda m, b, r: b["logits"])
    logits = jnp.array([[2.0, 0.0, -1.0], [0.1, 0.3, 0.2]])
    hard = {"logits": logits, "label": jnp.array([0, 2])}
    soft = {"logits": logits, "label": jax.nn.one_hot(jnp.array([0, 2]), 3)}
    (lh, mh), (ls, ms) = loss_hard(None, hard, None), loss_hard(None, soft, None)
    np.testing.assert_allclose(lh, ls, rtol=1e-6)
    assert float(mh["accuracy"]) == float(ms["accuracy"]) == 0.5


def test_rerun_of_a_finished_run_evaluates_without_training_or_duplicate_records(tmp_path, mesh8):
    """Running the same command twice: the second call restores the final checkpoint, trains
    nothing, returns the same evaluation and leaves metrics.jsonl as it was."""
    first = run(tmp_path, 4, mesh8)
    records = read_metrics(tmp_path)
    again = run(tmp_path, 4, mesh8)
    assert again.resumed_from == 4
    assert again.eval_metrics == first.eval_metrics and "all" in again.eval_metrics
    assert read_metrics(tmp_path) == records
    for a, b in zip(leaves(first.state), leaves(again.state), strict=True):
        np.testing.assert_array_equal(a, b)
