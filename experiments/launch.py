"""The command line shared by every experiment's ``main.py``: ``--config`` and ``--workdir``.

``main.py`` of an experiment is ``launch.run("experiments.<name>.train")``: absl parses the
flags, the multi-host runtime starts (``initialize_distributed``) before the experiment's
``train`` module is imported, and ``train.train_and_evaluate(config, workdir)`` runs.
"""

import importlib
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


def run(train_module: str) -> None:
    """Parses the flags and runs ``<train_module>.train_and_evaluate(config, workdir)``."""

    def main(argv):
        del argv
        # Orbax logs every save through absl at INFO; keep the console to our own messages.
        logging.getLogger("absl").setLevel(logging.WARNING)
        initialize_distributed()
        train = importlib.import_module(train_module)  # after distributed start-up
        logging.getLogger(train_module).info("Config:\n%s", FLAGS.config)
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)

    app.run(main)
