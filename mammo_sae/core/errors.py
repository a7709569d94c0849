"""The project's error types: every expected failure says what was wrong and what to do."""


class MammoSaeError(Exception):
    """Base class of every error mammo-sae raises on purpose (bad input, bad config, bad file)."""


class DataError(MammoSaeError):
    """A dataset root, CSV or image is missing, malformed or inconsistent."""


class ModelError(MammoSaeError):
    """A backbone spec, checkpoint, classifier file or layer name is invalid or does not fit the model."""


class TrainError(MammoSaeError):
    """SAE training was misconfigured, does not fit its store or checkpoint, or diverged."""


def os_error_message(error: OSError) -> str:
    """A file-system error as one line that says what failed and what to check."""
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}: check the path, its permissions and the free disk space"
