"""Library errors. The CLI turns them into exit codes; nothing below the CLI exits."""


class FormreaderError(Exception):
    """Base class of every error formreader raises on purpose."""


class TemplateError(FormreaderError):
    """A template or layout is missing or malformed."""


class InputError(FormreaderError):
    """An input file cannot be read (the message names the file and the cause)."""


class ModelError(FormreaderError):
    """A recognizer model is missing, malformed, or does not match this formreader."""


class ConfigError(FormreaderError):
    """A configuration file or option is invalid."""
