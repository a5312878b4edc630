"""The device suites: benchmarks/conftest.py (threads, name_contender, quick mode, ratio report)
applies here as well; this adds the GPU to the header and frees the peers' cached device memory
after each suite."""

import pytest

from device_peers import describe, release_memory


def pytest_report_header(config):
    return describe()


@pytest.fixture(scope="module", autouse=True)
def _release_device_memory():
    yield
    release_memory()
