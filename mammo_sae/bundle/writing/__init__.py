"""The analyze run that writes a bundle: stream a split through backbone + SAE into chunks, build the tables
(``mammo_sae.analysis``), write them, the report and the manifest last.

    from mammo_sae.bundle.writing import AnalyzeConfig, analyze
    summary = analyze(AnalyzeConfig(data="data/phantoms", classifier=("clf.safetensors",), sae="runs/sae", out="b"))
"""

from mammo_sae.bundle.writing.config import AnalyzeConfig, AnalyzeError
from mammo_sae.bundle.writing.run import analyze

__all__ = ["AnalyzeConfig", "AnalyzeError", "analyze"]
