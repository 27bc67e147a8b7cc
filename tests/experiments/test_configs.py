"""Every experiment config loads, in every variant it declares."""

import glob
import importlib
import os

import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "experiments", "*", "configs", "*.py"))
    if not p.endswith("__init__.py")
)


def _module(path):
    rel = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return importlib.import_module(rel)


def test_there_are_configs():
    assert any("arrow_pointing" in p for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_config_loads_in_every_variant(path):
    module = _module(path)
    assert module.__doc__ and "python -m experiments." in module.__doc__, "docstring: command"
    variants = getattr(module, "VARIANTS", None)
    assert variants, f"{path} must declare VARIANTS"
    for variant in (None, *variants):
        config = module.get_config(variant)
        assert isinstance(config, ml_collections.ConfigDict)
    with pytest.raises(ValueError, match="Unknown config variant"):
        module.get_config("no_such_variant")
