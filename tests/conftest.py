"""Test configuration: 8 fake CPU devices, set before JAX initialises."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

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
