"""The one exception type the command line turns into a clean message."""


class SelfSupError(Exception):
    """A problem with the user's input or environment: the message names it and the fix."""
