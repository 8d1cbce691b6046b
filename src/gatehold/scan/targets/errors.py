"""The one error a target loader raises: the target could not be read, parsed or reached."""

from __future__ import annotations


class TargetError(Exception):
    """A target that cannot be scanned. The message is one clear line that names the target.

    It is shown to the user as is (on stderr and in the report's errors), so it never carries a
    traceback, and never a secret's value.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
