"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class MixerError(Exception):
    """Bad usage or bad input: a recipe key, a file, a line. Printed as one line, exit 2."""
