"""The error a user can fix (a bad recipe, option or input file), and reading a user's text file safely.

The bottom of the package: every stage raises :class:`RecipeError` for input a user can correct, and the
command line turns it into one message and exit status 2.
"""

from __future__ import annotations

from pathlib import Path


class RecipeError(ValueError):
    """A recipe or override is wrong; the message names the key and what to do."""


def read_utf8(path: Path, error: type[Exception]) -> str:
    """The text of ``path`` as UTF-8 (a leading BOM, as spreadsheets write, is dropped).

    Other bytes raise ``error`` naming the file and the line, so a user can find and re-save it.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        raise error(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[bad.start]:02x}); save it as UTF-8 "
            "(e.g. in your editor or spreadsheet: Save as / Encoding: UTF-8)."
        ) from None
