"""Runs the long-range graph experiment (see configs/default.py for commands)."""

from experiments import launch

if __name__ == "__main__":
    launch.run("experiments.graph_longrange.train")
