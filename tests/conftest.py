"""Session-wide fixtures shared by several test modules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from analysis_fixtures import Setting, analyze_args, build_setting

from mammo_sae import analyze as analyze_cli


@pytest.fixture(scope="session")
def analysis_setting(tmp_path_factory: pytest.TempPathFactory) -> Setting:
    """Phantoms, a random resnet18 classifier, its store and a briefly trained SAE (built once)."""
    return build_setting(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="session")
def analysis_bundle_path(analysis_setting: Setting) -> Path:
    out = analysis_setting.root / "bundle"
    assert analyze_cli.main(analyze_args(analysis_setting, out)) == 0
    return out


@pytest.fixture(scope="session")
def finetune_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small phantom studies with both classes of both findings in the training slice."""
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset

    root = tmp_path_factory.mktemp("finetune") / "phantoms"
    config = PhantomConfig(studies=6, seed=5, height=256, width=208, test_fraction=0.0, mass_rate=0.5)
    generate_dataset(root, config, workers=1)
    return root
