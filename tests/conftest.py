"""Test configuration: 8 fake CPU devices, set before JAX initialises."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

import jppl.distributions as dist  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_validation():
    """Each test starts with global validation off, whatever an earlier test did."""
    dist.enable_validation(False)
    yield
    dist.enable_validation(False)


@pytest.fixture
def key():
    return jax.random.key(0)


_LONG_TESTS = Path(__file__).with_name("long_tests.txt")


def _long_test_ids() -> set[str]:
    lines = _LONG_TESTS.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Marks the ids in long_tests.txt ``slow``; an id missing from a collected file fails."""
    long_ids = _long_test_ids()
    root = _LONG_TESTS.parent.parent

    def key(item) -> str:  # the id from the repository root, wherever pytest was started
        return item.path.relative_to(root).as_posix() + item.nodeid[item.nodeid.index("::") :]

    collected = {key(item): item for item in items}
    files = {k.split("::")[0] for k in collected}
    stale = sorted(i for i in long_ids if i.split("::")[0] in files and i not in collected)
    # a run of single tests (file::name) collects only part of a file: check whole files only
    partial = any("::" in arg for arg in config.args)
    if stale and not partial:
        raise pytest.UsageError(f"tests/long_tests.txt lists tests that do not exist: {stale}")
    for k, item in collected.items():
        if k in long_ids:
            item.add_marker(pytest.mark.slow)
