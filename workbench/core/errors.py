"""User-facing errors: one line that names the bad input and how to fix it (the CLI exits with status 2)."""


class WorkbenchError(Exception):
    """Bad input or environment. The message is shown to the user as-is, on one line."""
