"""The emoji fixture needs two Debian packages (scripts/bootstrap.sh installs them as root).  Locally a
test that needs them is skipped when they are missing; under CI it fails, so CI cannot pass without
checking the image road."""

import os

import pytest

from evaluation.fixtures.emoji import INSTALL_HINT, fixture_available


def require_emoji_fixture() -> None:
    if fixture_available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"the emoji fixture is missing under CI: {INSTALL_HINT}")
    pytest.skip(f"emoji fixture missing: {INSTALL_HINT}")
