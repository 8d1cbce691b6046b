"""Where client configurations are looked for, per OS, in a temporary home."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatehold.scan.targets.discover import candidates, discover


@pytest.mark.parametrize(("platform", "desktop", "vscode", "zed"), [
    ("darwin", "Library/Application Support/Claude/claude_desktop_config.json",
     "Library/Application Support/Code/User/mcp.json", ".config/zed/settings.json"),
    ("win32", "AppData/Roaming/Claude/claude_desktop_config.json", "AppData/Roaming/Code/User/mcp.json",
     "AppData/Roaming/Zed/settings.json"),
    ("linux", ".config/Claude/claude_desktop_config.json", ".config/Code/User/mcp.json", ".config/zed/settings.json"),
])
def test_candidates_per_platform(tmp_path: Path, platform: str, desktop: str, vscode: str, zed: str) -> None:
    home, cwd = tmp_path / "home", tmp_path / "project"
    found = candidates(home, cwd, platform)
    for relative in (desktop, vscode, zed, ".cursor/mcp.json", ".codeium/windsurf/mcp_config.json", ".claude.json",
                     ".gemini/settings.json", ".codex/config.toml", ".continue/config.yaml"):
        assert home / relative in found, relative
    assert home / vscode.replace("mcp.json", "settings.json") in found
    for relative in (".mcp.json", ".cursor/mcp.json", ".vscode/mcp.json"):
        assert cwd / relative in found, relative
    assert len(found) == len(set(found))


def test_discover_returns_the_existing_files_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for relative in (".cursor/mcp.json", ".codex/config.toml", ".config/Claude/claude_desktop_config.json"):
        (home / relative).parent.mkdir(parents=True, exist_ok=True)
        (home / relative).write_text("{}", encoding="utf-8")
    (home / ".vscode").mkdir()
    (home / ".vscode" / "mcp.json").mkdir()  # a directory, not a file: not a candidate
    # run from the home folder: <cwd>/.cursor/mcp.json is the same file as ~/.cursor/mcp.json
    found = discover(home, home, "linux")
    assert found == [home / ".config/Claude/claude_desktop_config.json", home / ".cursor/mcp.json",
                     home / ".codex/config.toml"]


def test_discover_in_an_empty_home_finds_nothing(tmp_path: Path) -> None:
    assert discover(tmp_path, tmp_path, "darwin") == []
