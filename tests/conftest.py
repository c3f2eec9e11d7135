"""Suite-wide hooks: say loudly when the shared data sets were missing (their tests skip, and a run
without them would otherwise look green)."""

from __future__ import annotations

MISSING_DATA = "shared data not present"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    missing = sum(1 for report in skipped if MISSING_DATA in str(report.longrepr))
    if missing:
        terminalreporter.write_sep("!", f"{missing} tests skipped: ../shared/data is not beside this checkout "
                                        "(clone the project next to shared/ to run them)", red=True, bold=True)
