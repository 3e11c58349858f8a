"""Shared fixtures and settings of the suite.

Hypothesis profiles: ``default`` (100 examples per property, derandomized so runs repeat exactly), ``slow``
(1000 examples; select with ``--hypothesis-profile=slow``), ``ci`` (as default, no deadline).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# torch is imported inside the hooks and fixtures that use it: pytest-xdist's controller process loads this
# file too, runs no test, and would otherwise spend seconds importing torch before the workers start

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]
FIXTURES = ROOT / "fixtures"

settings.register_profile("default", max_examples=100, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("slow", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _isolated_rng():
    """No test sees RNG state left behind by another (order independence)."""
    import torch

    torch_state, py_state = torch.get_rng_state(), random.getstate()
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    random.seed(0)
    yield
    torch.set_rng_state(torch_state)
    random.setstate(py_state)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def accelerators() -> list[str]:
    import torch

    devs = []
    if torch.cuda.is_available():
        devs.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devs.append("mps")
    return devs


def pytest_configure(config):
    # pytest-xdist starts one process per worker; torch's default of one thread per core in each of them would
    # oversubscribe the machine, so each worker gets its share of the cores
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_finish(session):
    """Move everything alive after collection (torch, torchvision, hypothesis, the test modules: millions of
    objects) out of the garbage collector's sight: the full collections that a test's allocations trigger no
    longer walk them each time. Nothing is computed differently (measured in one process: the contract-property,
    transform, model and training files 75-77 s -> 74 s of wall time, 71 s -> 68-69 s of user CPU)."""
    import gc

    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(config, items):
    no_gpu = pytest.mark.skip(reason="no CUDA or MPS device on this machine; the GPU leg runs where one is present")
    shared = pytest.mark.skip(reason="benchmarks need the machine to themselves; pytest-xdist runs tests side by "
                                     "side (run them without -n)")
    in_xdist_worker = "PYTEST_XDIST_WORKER" in os.environ
    has_accelerator = bool(accelerators())
    for item in items:
        if "gpu" in item.keywords and not has_accelerator:
            item.add_marker(no_gpu)
        if "benchmark_run" in item.keywords and in_xdist_worker:
            item.add_marker(shared)
    # Longest first: the gate's training, then the files with the most CPU time (measured; pytest -n 2 --dist
    # loadfile --no-loadscope-reorder hands whole files out in this order), so that neither worker is left with
    # a long file at the end while the other idles. Within a rank the order stays pytest-randomly's.
    items.sort(key=lambda item: ("gate" not in item.keywords, _file_rank(item)))


LONGEST_FILES = ("test_models.py", "test_training.py", "test_contract_properties.py", "test_transforms.py")


def _file_rank(item) -> int:
    name = item.path.name
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
