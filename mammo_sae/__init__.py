"""mammo-sae: sparse-autoencoder concept neurons for mammography models. Research use only."""

from mammo_sae.core.errors import MammoSaeError

__version__ = "0.1.0"
RESEARCH_USE_NOTICE = "Research use only - not for diagnosis."

__all__ = ["RESEARCH_USE_NOTICE", "MammoSaeError", "__version__"]
