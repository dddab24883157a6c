class StackError(RuntimeError):
    """The embedded stack could not start; the message says which part and why."""
