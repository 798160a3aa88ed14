"""Errors shown to users as one clear line (never a traceback)."""


class LabconError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class ConfigError(LabconError):
    """A session config is invalid (the message carries file and line)."""


class DataError(LabconError):
    """A dataset or DataBlock problem (names the file, folder or part)."""


class CheckpointError(LabconError):
    """A checkpoint cannot be read or is unsafe to load."""


class CommandError(LabconError):
    """A console command is malformed or not valid for the live session."""
