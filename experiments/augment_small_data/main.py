"""Runs the augmentation-on-small-data experiment (see configs/default.py for commands)."""

from experiments import launch

if __name__ == "__main__":
    launch.run("experiments.augment_small_data.train")
