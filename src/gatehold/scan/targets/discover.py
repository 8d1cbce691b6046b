"""Where MCP clients keep their server configurations, per operating system.

``candidates`` lists the usual places (user-wide under ``home``, per project under ``cwd``);
``discover`` keeps those that exist. ``platform`` is a ``sys.platform`` value: ``darwin``,
``win32``, anything else is treated as Linux. Windows' ``%APPDATA%`` is taken as
``<home>/AppData/Roaming``, where Windows puts it by default. Nothing here reads a file.
"""

from __future__ import annotations

from pathlib import Path

CLINE_SETTINGS = ("globalStorage", "saoudrizwan.claude-dev", "settings", "cline_mcp_settings.json")


def app_data(home: Path, platform: str) -> Path:
    """Where desktop applications keep per-user settings on ``platform``."""
    if platform == "darwin":
        return home / "Library" / "Application Support"
    if platform == "win32":
        return home / "AppData" / "Roaming"
    return home / ".config"


def candidates(home: Path, cwd: Path, platform: str) -> list[Path]:
    """The usual client configuration files, user-wide first, then the project's, without duplicates."""
    data = app_data(home, platform)
    found = [
        data / "Claude" / "claude_desktop_config.json",  # Claude Desktop
        home / ".claude.json",  # Claude Code (user and per-project servers)
        home / ".cursor" / "mcp.json",  # Cursor
        home / ".codeium" / "windsurf" / "mcp_config.json",  # Windsurf
        home / ".gemini" / "settings.json",  # Gemini CLI
        home / ".codex" / "config.toml",  # Codex
        home / ".continue" / "config.yaml",  # Continue
        (data / "Zed" / "settings.json") if platform == "win32" else (home / ".config" / "zed" / "settings.json"),
    ]
    for editor in ("Code", "Code - Insiders", "VSCodium"):  # VS Code's user settings, mcp.json and Cline
        user = data / editor / "User"
        found += [user / "mcp.json", user / "settings.json", user.joinpath(*CLINE_SETTINGS)]
    found += [
        cwd / ".mcp.json",  # Claude Code, project scope
        cwd / ".cursor" / "mcp.json",
        cwd / ".vscode" / "mcp.json",
        cwd / ".gemini" / "settings.json",
    ]
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def discover(home: Path, cwd: Path, platform: str) -> list[Path]:
    """The candidates that exist as files (a path reached twice, e.g. when ``cwd`` is ``home``, once)."""
    seen: set[Path] = set()
    existing: list[Path] = []
    for path in candidates(home, cwd, platform):
        if not path.is_file():
            continue
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            existing.append(path)
    return existing
