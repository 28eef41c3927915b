"""The experiment format: YAML with positions, substitution, validation, JSON Schema."""

from chaoskit.experiment.load import Experiment, load_experiment

__all__ = ["Experiment", "load_experiment"]
