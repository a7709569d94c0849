"""The project's error types: every expected failure says what was wrong and what to do."""


class MammoSaeError(Exception):
    """Base class of every error mammo-sae raises on purpose (bad input, bad config, bad file)."""


class DataError(MammoSaeError):
    """A dataset root, CSV or image is missing, malformed or inconsistent."""


class ModelError(MammoSaeError):
    """A backbone spec, checkpoint, classifier file or layer name is invalid or does not fit the model."""


class TrainError(MammoSaeError):
    """SAE training was misconfigured, does not fit its store or checkpoint, or diverged."""
