"""Exit codes of ``cli.py``, in one place (documented in the README)."""

OK = 0                 # everything synced
NEEDS_ATTENTION = 1    # the run completed, some answers need attention
USAGE_ERROR = 2        # bad command line, settings or mapping
ABORTED = 3            # survey API or Bitrix24 unreachable, or credentials refused
LOCKED = 4             # another run holds the lock; nothing was written
