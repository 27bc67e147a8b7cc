"""Runs the arrow-pointing extrapolation experiment (see configs/default.py for commands)."""

from experiments import launch

if __name__ == "__main__":
    launch.run("experiments.arrow_pointing.train")
