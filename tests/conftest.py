"""Hypothesis profiles: a fast default for development and a ``ci`` profile with more examples; the ``torch``
fixture, PyTorch as an oracle where it is installed."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

NO_TORCH = "PyTorch is not installed: it is the optional extra, pip install 'microgradx[torch]'"


@pytest.fixture
def torch():
    """PyTorch, the oracle; the test is skipped when it is not installed. One thread: these arrays are tiny,
    and on a busy 2-core machine PyTorch's thread pool makes them many times slower."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)
