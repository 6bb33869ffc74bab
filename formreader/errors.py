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


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message cut to one line for a row's `error` cell (its type when it says nothing)."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__
