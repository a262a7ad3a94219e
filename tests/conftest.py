"""Shared fixtures. Long runs are marked `slow` and run only with `--runslow` (or -m slow)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long runs (C corpus through the model, full spec replay)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def runner():
    from wasm_runner import Runner
    return Runner()


@pytest.fixture(scope="session")
def fast_runner():
    from wasm_runner import Runner
    return Runner(engine="fast")


@pytest.fixture(scope="session")
def dense_runner(runner):
    from wasm_runner import Runner
    r = Runner.__new__(Runner)
    r.__dict__.update(runner.__dict__)
    r.dense = True
    return r


@pytest.fixture(scope="session")
def machine():
    from compiler.machine import Machine
    return Machine()


@pytest.fixture(scope="session")
def evaluator(machine):
    from compiler import tables
    from compiler.evaluate import GraphEvaluator
    return GraphEvaluator(machine.g, machine.logits(), tables.memory_ids())
