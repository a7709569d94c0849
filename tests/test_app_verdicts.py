"""The verdict and session accessors inside a Streamlit run on the shipped demo bundle: the sidebar's name
signs every verdict, saves show on the next read (the cache follows the file), two app sessions keep each
other's verdicts, the CSV downloads neutralised, and sessions open with missing studies marked."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from mammo_sae.bundle.notes import NOTES_ENV

APP = Path(__file__).resolve().parents[1] / "app"
DEMO = Path(__file__).resolve().parents[1] / "weights" / "demo" / "bundle"

SCRIPT = """
import sys
sys.path.insert(0, {app!r})
import accessors
import streamlit as st
from mammo_sae.bundle import BundleError

v = accessors.verdicts
bundle = accessors.open_bundle({bundle!r})
studies = accessors.study_ids(bundle)
action = st.session_state.get("action")
out = {{"reviewer": v.reviewer()}}
try:
    if action == "case":
        v.save_case_verdict(bundle, studies[0], "yes", "false positive", st.session_state["note"])
        v.save_latent_verdict(bundle, 5, "yes")
    elif action == "session":
        v.save_session(bundle, "Round 1", [(studies[1], "first"), "not-in-bundle", studies[2]])
    elif action == "unknown study":
        v.save_case_verdict(bundle, "not-in-bundle", "yes")
except BundleError as error:
    out["error"] = str(error)
mine = v.case_verdict(bundle, studies[0])
out.update(
    mine=None if mine is None else (mine.reviewer, mine.evidence, mine.model_error, mine.note),
    everyone=[x.reviewer for x in v.case_verdicts(bundle, studies[0])],
    reviewed=sorted(v.reviewed_studies(bundle)),
    first=studies[0],
    metrics=v.agreement_metrics(bundle),
    latent=None if v.latent_verdict(bundle, 5) is None else v.latent_verdict(bundle, 5).coherent,
    latent_line=v.latent_verdict_line(bundle, 5),
    csv=v.verdicts_csv(bundle),
    csv_name=v.csv_file_name(bundle),
    sessions=v.session_names(bundle),
)
if "Round 1" in out["sessions"]:
    session = v.load_session(bundle, "round 1")
    out["session"] = (session.present, session.missing, session.note(studies[1]), session.author)
st.session_state["out"] = out
"""


def run(monkeypatch: pytest.MonkeyPatch, notes: Path, name: str, **state) -> dict:
    monkeypatch.setenv(NOTES_ENV, str(notes))
    app = AppTest.from_string(SCRIPT.format(app=str(APP), bundle=str(DEMO)), default_timeout=60)
    app.session_state["note_author"] = name
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, app.exception
    return app.session_state["out"]


def test_verdicts_are_signed_by_the_sidebar_name_and_kept_per_reviewer(monkeypatch, tmp_path: Path) -> None:
    nobody = run(monkeypatch, tmp_path, "   ", action="case", note="")
    assert nobody["reviewer"] is None and "Type your name in the sidebar" in nobody["error"]
    assert nobody["reviewed"] == [] and nobody["mine"] is None
    ada = run(monkeypatch, tmp_path, " Dr.  Ada ", action="case", note="=1+1")
    assert ada["reviewer"] == "Dr. Ada" and ada["mine"] == ("Dr. Ada", "yes", "false positive", "=1+1")
    assert (
        ada["reviewed"] == [ada["first"]]
        and ada["latent"] == "yes"
        and ada["latent_line"] == "coherent: yes 1"
    )
    bo = run(monkeypatch, tmp_path, "Bo", action="case", note="second")
    assert bo["everyone"] == ["Bo", "Dr. Ada"] and bo["mine"][3] == "second", "each keeps their own"
    metrics = {label: value for label, value, _ in bo["metrics"]}
    assert metrics["Cases reviewed"] == "1" and metrics["Evidence on the finding"] == "100%"
    assert metrics["Reviewers agree"] == "1 of 1" and metrics["Coherent latents"] == "1"
    assert metrics["Model errors"] == "1 FP · 0 FN"
    table = pd.read_csv(io.BytesIO(bo["csv"]), encoding="utf-8-sig", keep_default_na=False)
    assert sorted(table["note"]) == ["", "", "'=1+1", "second"] and bo["csv_name"].startswith("verdicts-")
    unknown = run(monkeypatch, tmp_path, "Bo", action="unknown study")
    assert "is not in this bundle" in unknown["error"]


def test_a_session_opens_by_name_with_missing_studies_marked(monkeypatch, tmp_path: Path) -> None:
    out = run(monkeypatch, tmp_path, "Ada", action="session")
    assert out["sessions"] == ["Round 1"]
    present, missing, note, author = out["session"]
    assert len(present) == 2 and missing == ["not-in-bundle"] and note == "first" and author == "Ada"
