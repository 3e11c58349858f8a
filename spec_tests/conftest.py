"""Shared fixtures and settings of the suite.

Hypothesis profiles: ``default`` (100 examples per property, derandomized so runs repeat exactly, no deadline,
the too_slow and data_too_large health checks off) and ``slow`` (the same with 1000 examples; select with
``--hypothesis-profile=slow``).
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
    # Longest first, so that neither xdist worker is left with a long file at the end while the other idles
    # (pytest -n 2 --dist loadfile --no-loadscope-reorder hands whole files out in this order): the gate's
    # training (its marker says which test it is), then, under xdist, the files by the seconds they took in the
    # last run that ran them (pytest's cache; files never timed, and every file without a cache, e.g. with
    # -p no:cacheprovider, keep pytest-randomly's order). In one process the files keep pytest-randomly's order,
    # so --randomly-seed=N repeats a run's order whatever the cache holds. Within a file the order stays
    # pytest-randomly's.
    seconds = _recorded_file_seconds(config) if in_xdist_worker else {}
    items.sort(key=lambda item: ("gate" not in item.keywords, -seconds.get(_file_of(item.nodeid), 0.0)))


# --- each file's seconds, recorded for the next run's order --------------------------------------------------

FILE_SECONDS_KEY = "tvref/file_seconds"
_seconds_this_run: dict[str, float] = {}


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _recorded_file_seconds(config) -> dict[str, float]:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: the controller's copy (pytest_configure_node)
        return workerinput.get("tvref_file_seconds", {})
    cache = getattr(config, "cache", None)
    return cache.get(FILE_SECONDS_KEY, {}) if cache is not None else {}


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """The xdist controller reads the recorded seconds once and hands every worker that copy: a run finishing
    beside this one may rewrite the cache while the workers collect, and workers that collected different orders
    would abort the run."""
    node.workerinput["tvref_file_seconds"] = _recorded_file_seconds(node.config)


def pytest_runtest_logreport(report):
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller (or the only process) sees every report
        file = _file_of(report.nodeid)
        _seconds_this_run[file] = _seconds_this_run.get(file, 0.0) + report.duration


def pytest_sessionfinish(session):
    cache = getattr(session.config, "cache", None)
    if "PYTEST_XDIST_WORKER" in os.environ or cache is None or not _seconds_this_run:
        return
    recorded = dict(cache.get(FILE_SECONDS_KEY, {}))
    recorded.update({file: round(s, 2) for file, s in _seconds_this_run.items()})
    cache.set(FILE_SECONDS_KEY, recorded)
