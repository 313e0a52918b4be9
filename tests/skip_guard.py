"""pytest plugin (loaded by tests/conftest.py): with VITJAX_NO_SKIPS=1, every skipped test fails.

CI (.ci/run) installs every oracle and provides the fixture files, so there a skip can only mean a
test silently stopped checking something; a contributor's venv without the oracles leaves the
variable unset and sees ordinary skips with their reasons (`pytest -rs`).
"""

import os

import pytest

ENV = "VITJAX_NO_SKIPS"


def _active() -> bool:
    return os.environ.get(ENV, "") == "1"


def _reason(report) -> str:
    # A skip report's longrepr is (path, line, "Skipped: reason").
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        reason = str(report.longrepr[2])
    else:
        reason = str(report.longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _active() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} was skipped under {ENV}=1, where every test must run "
            f"(install everything: pip install -e '.[test]', and set VITJAX_FIXTURES): "
            f"{_reason(report)}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A whole module skipped at collection (pytest.skip(allow_module_level=True)) fails too.
    outcome = yield
    report = outcome.get_result()
    if _active() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} was skipped under {ENV}=1: {_reason(report)}"
