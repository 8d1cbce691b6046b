"""Writing the scanner's own files (baseline, lockfile): a reader never sees a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, then rename it over ``target``."""
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        # Not a control: the temporary file is removed and the error goes on to the caller.
        Path(temporary).unlink(missing_ok=True)
        raise
