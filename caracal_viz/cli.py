"""The command line: `python -m caracal_viz check|report|analyze`.

Exit codes: 0 success (check: the checkpoint is causal), 1 check found a leak, 2 bad input
(missing file, bad checkpoint, bad text, bad arguments), with one line on stderr and no traceback.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default sys.argv[1:]) and return the exit code."""
    raise NotImplementedError
