import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.attack_report import summary_lines

    lines = summary_lines()
    if lines:
        terminalreporter.section("attack suites")
        for line in lines:
            terminalreporter.write_line(line)
