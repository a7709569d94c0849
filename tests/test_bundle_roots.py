"""Typed bundle paths are resolved and opened only inside the configured roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mammo_sae.bundle import BundleError
from mammo_sae.bundle.roots import BUNDLE_ENV, ROOTS_ENV, BundlePathError, bundle_roots, resolve_bundle_path


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A root holding a bundle folder, and a secret folder beside the root."""
    root, secret = tmp_path / "weights", tmp_path / "secret"
    (root / "demo" / "bundle").mkdir(parents=True)
    secret.mkdir()
    return {"root": root, "bundle": root / "demo" / "bundle", "secret": secret}


def test_a_path_inside_a_root_is_allowed_and_resolved(layout: dict[str, Path]) -> None:
    roots = bundle_roots([layout["root"]], environ={})
    assert resolve_bundle_path(layout["bundle"], roots) == layout["bundle"].resolve()
    inner_dots = layout["root"] / "demo" / ".." / "demo" / "bundle"
    assert resolve_bundle_path(str(inner_dots), roots) == layout["bundle"].resolve()


def test_dot_dot_cannot_climb_out_of_a_root(layout: dict[str, Path]) -> None:
    roots = bundle_roots([layout["root"]], environ={})
    with pytest.raises(BundlePathError, match="outside the folders bundles may be opened from") as caught:
        resolve_bundle_path(layout["root"] / ".." / "secret", roots)
    assert ROOTS_ENV in str(caught.value), "the message names the setting that allows the folder"
    assert isinstance(caught.value, BundleError)
    with pytest.raises(BundlePathError):
        resolve_bundle_path(f"{layout['bundle']}/../../../../../../etc", roots)


def test_a_symlink_inside_a_root_cannot_escape_it(layout: dict[str, Path]) -> None:
    link = layout["root"] / "innocent"
    link.symlink_to(layout["secret"], target_is_directory=True)
    roots = bundle_roots([layout["root"]], environ={})
    with pytest.raises(BundlePathError):
        resolve_bundle_path(link, roots)
    with pytest.raises(BundlePathError):
        resolve_bundle_path(link / "bundle", roots)


def test_a_root_reached_through_a_symlink_still_allows_its_bundles(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(layout["root"], target_is_directory=True)
    roots = bundle_roots([alias], environ={})
    assert resolve_bundle_path(layout["bundle"], roots) == layout["bundle"].resolve()


def test_a_prefix_is_not_a_parent(layout: dict[str, Path], tmp_path: Path) -> None:
    sibling = tmp_path / "weights-private"
    sibling.mkdir()
    with pytest.raises(BundlePathError):
        resolve_bundle_path(sibling, bundle_roots([layout["root"]], environ={}))


def test_environment_roots_and_the_bundle_variable_extend_the_defaults(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    extra, own = tmp_path / "team", tmp_path / "mine" / "bundle"
    environ = {ROOTS_ENV: f"{extra}{os.pathsep}{os.pathsep} ", BUNDLE_ENV: str(own)}
    roots = bundle_roots([layout["root"]], environ=environ)
    assert roots == (layout["root"].resolve(), extra.resolve(), own.resolve()), "empty entries are skipped"
    assert resolve_bundle_path(extra / "x" / "bundle", roots) == (extra / "x" / "bundle").resolve()
    assert resolve_bundle_path(own, roots) == own.resolve()
    with pytest.raises(BundlePathError):
        resolve_bundle_path(own.parent, roots)


def test_home_and_relative_paths_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    roots = bundle_roots(["~/runs"], environ={})
    assert roots == ((tmp_path / "runs").resolve(),)
    assert resolve_bundle_path("runs/b", roots) == (tmp_path / "runs" / "b").resolve()
    with pytest.raises(BundlePathError):
        resolve_bundle_path("~", roots)
