"""Runs the long-range graph experiment (see configs/default.py for commands)."""

import logging

from absl import app, flags
from ml_collections import config_flags

from augpar.parallel import initialize_distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (with :variant).", lock_config=True)
flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and plots go (resumes if present)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    # Orbax logs every save through absl at INFO; keep the console to our own messages.
    logging.getLogger("absl").setLevel(logging.WARNING)
    initialize_distributed()
    from experiments.graph_longrange import train  # after distributed start-up

    logging.getLogger(__name__).info("Config:\n%s", FLAGS.config)
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
