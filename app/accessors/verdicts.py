"""Reviewer verdicts and review sessions for the pages: this session's reviewer (the sidebar's name), the
verdicts on a case or a latent, the agreement so far, the CSV export, and the saved worklists.

Everything is kept beside the latent notes (``accessors.notes_location()``, one folder per bundle
identity); reads are cached on the file's stamp, so a save by anyone shows on the next rerun. Library
errors (a damaged file, a bad name, a full disk) are BundleErrors that say what to do: pages show them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st

import accessors
from mammo_sae.bundle import BundleError
from mammo_sae.bundle import sessions as rs
from mammo_sae.bundle import verdicts as vd
from mammo_sae.bundle.notes import bundle_identity
from mammo_sae.bundle.stamps import FileStamp, file_stamp

EVIDENCE_CHOICES = vd.EVIDENCE  # "does the evidence fall on the finding": yes / partly / no
MODEL_ERROR_CHOICES = vd.MODEL_ERRORS  # no / false positive / false negative
COHERENT_CHOICES = vd.COHERENT  # "one coherent concept": yes / no / unsure
MAX_NOTE = vd.MAX_NOTE
MAX_SESSION_NAME = rs.MAX_NAME
REVIEWER_NEEDED = "Type your name in the sidebar to record verdicts; it is saved with each one."
CaseVerdict, LatentVerdict, Agreement = vd.CaseVerdict, vd.LatentVerdict, vd.Agreement
ReviewSession, SessionItem = rs.ReviewSession, rs.SessionItem


# --- the reviewer ------------------------------------------------------------------------------------------


def reviewer() -> str | None:
    """The name typed in the sidebar (typed once per session), normalised; None when there is none or it is
    not a usable name: verdicts can not be saved then (show ``REVIEWER_NEEDED``)."""
    try:
        return vd.reviewer_name(st.session_state.get(accessors.AUTHOR_KEY) or "")
    except BundleError:
        return None


def _reviewer() -> str:
    name = reviewer()
    if name is None:
        raise BundleError(REVIEWER_NEEDED)
    return name


# --- verdicts ----------------------------------------------------------------------------------------------


def store(bundle: accessors.Bundle) -> vd.Verdicts:
    """The bundle's verdicts, beside its latent notes in the user's data folder."""
    return vd.Verdicts.for_bundle(bundle.manifest, accessors.notes_location())


@st.cache_data(show_spinner=False, max_entries=16)
def _snapshot(
    folder: str, d_sae: int, stamp: FileStamp
) -> tuple[list[vd.CaseVerdict], list[vd.LatentVerdict]]:
    verdicts = vd.Verdicts(folder, d_sae)
    return verdicts.cases(), verdicts.latents()


def _read(bundle: accessors.Bundle) -> tuple[list[vd.CaseVerdict], list[vd.LatentVerdict]]:
    verdicts = store(bundle)
    return _snapshot(str(verdicts.folder), int(bundle.d_sae), file_stamp(verdicts.path))


def case_verdicts(bundle: accessors.Bundle, study: str) -> list[vd.CaseVerdict]:
    """Every reviewer's verdict on ``study`` (by reviewer)."""
    return [v for v in _read(bundle)[0] if v.study == study]


def case_verdict(bundle: accessors.Bundle, study: str) -> vd.CaseVerdict | None:
    """This session's reviewer's verdict on ``study`` (None without a name or a verdict): the form's start."""
    name = reviewer()
    if name is None:
        return None
    return next((v for v in case_verdicts(bundle, study) if v.reviewer.casefold() == name.casefold()), None)


def save_case_verdict(
    bundle: accessors.Bundle, study: str, evidence: str | None, model_error: str = "no", note: str = ""
) -> vd.CaseVerdict:
    """Save this reviewer's verdict on ``study`` (replacing their earlier one; others' are kept).
    ``evidence`` None = not judged. BundleError without a reviewer name, for a study the bundle does not
    hold, a bad choice, a note over ``MAX_NOTE`` characters, or a file that can not be written."""
    if study not in set(accessors.study_ids(bundle)):
        raise BundleError(f"study {str(study)[:40]!r} is not in this bundle; pick one from the worklist")
    return store(bundle).save_case(study, _reviewer(), evidence=evidence, model_error=model_error, note=note)


def clear_case_verdict(bundle: accessors.Bundle, study: str) -> bool:
    """Withdraw this reviewer's verdict on ``study``; False when there was none."""
    return store(bundle).remove_case(study, _reviewer())


def latent_verdicts(bundle: accessors.Bundle, latent: int) -> list[vd.LatentVerdict]:
    return [v for v in _read(bundle)[1] if v.latent == int(latent)]


def latent_verdict(bundle: accessors.Bundle, latent: int) -> vd.LatentVerdict | None:
    """This reviewer's "coherent concept" verdict on ``latent`` (None without a name or a verdict)."""
    name = reviewer()
    if name is None:
        return None
    return next(
        (v for v in latent_verdicts(bundle, latent) if v.reviewer.casefold() == name.casefold()), None
    )


def save_latent_verdict(bundle: accessors.Bundle, latent: int, coherent: str) -> vd.LatentVerdict:
    """Save whether this reviewer finds ``latent``'s top patches one coherent concept (yes / no / unsure)."""
    return store(bundle).save_latent(int(latent), _reviewer(), coherent)


def clear_latent_verdict(bundle: accessors.Bundle, latent: int) -> bool:
    return store(bundle).remove_latent(int(latent), _reviewer())


def latent_verdict_line(bundle: accessors.Bundle, latent: int) -> str:
    """``coherent: yes 2 · unsure 1`` (Markdown-safe), or "" before anyone judged it: beside its name."""
    counts = pd.Series([v.coherent for v in latent_verdicts(bundle, latent)]).value_counts()
    if counts.empty:
        return ""
    return "coherent: " + " · ".join(f"{c} {int(counts[c])}" for c in COHERENT_CHOICES if c in counts)


def case_verdict_table(bundle: accessors.Bundle, study: str) -> pd.DataFrame:
    """Every reviewer's verdict on ``study`` as a table (reviewer, evidence, model error, note, updated)."""
    rows = [
        {"reviewer": v.reviewer, "evidence on the finding": v.evidence or "not judged",
         "model error": v.model_error, "note": v.note, "updated": v.updated}
        for v in case_verdicts(bundle, study)
    ]  # fmt: skip
    return pd.DataFrame(
        rows, columns=["reviewer", "evidence on the finding", "model error", "note", "updated"]
    )


def verdict_line(verdict: vd.CaseVerdict) -> str:
    """One reviewer's case verdict as a line of Markdown-safe text (for listing colleagues' verdicts)."""
    evidence = verdict.evidence or "not judged"
    parts = [f"{verdict.reviewer}: evidence on the finding {evidence}", f"model error {verdict.model_error}"]
    if verdict.note:
        parts.append(verdict.note)
    parts.append(verdict.updated.replace("T", " ").replace("+00:00", " UTC"))
    return accessors.md_text(" · ".join(parts))


def reviewed_studies(bundle: accessors.Bundle) -> set[str]:
    """The studies anyone has given a verdict (the worklist's "reviewed" mark)."""
    return {v.study for v in _read(bundle)[0]}


def agreement(bundle: accessors.Bundle) -> vd.Agreement:
    """The verdicts so far: cases reviewed, shares judged "evidence on the finding", per-case agreement,
    latents judged coherent by at least two reviewers, model errors by kind."""
    return vd.agreement(*_read(bundle))


def agreement_table(bundle: accessors.Bundle) -> pd.DataFrame:
    """One row per study judged by several reviewers: their answers and whether they agree."""
    return vd.agreement_table(agreement(bundle))


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def agreement_metrics(bundle: accessors.Bundle) -> list[tuple[str, str, str]]:
    """(label, value, help) for the Overview's agreement panel, one ``st.metric`` each."""
    summary = agreement(bundle)
    agreed = f"{summary.agreed} of {len(summary.per_case)}" if summary.per_case else "–"
    errors = summary.model_errors
    return [
        ("Cases reviewed", str(summary.cases_reviewed), "Studies with a verdict from at least one reviewer."),
        (
            "Evidence on the finding",
            _share(summary.share_yes),
            f"Share of case verdicts answering 'yes' ({_share(summary.share_yes_or_partly)} with 'partly'), "
            f"of {summary.evidence_judged} that judged it.",
        ),
        ("Reviewers agree", agreed, "Studies judged by two or more reviewers where every answer matches."),
        (
            "Coherent latents",
            str(len(summary.coherent_latents)),
            "Latents whose top patches at least two reviewers judged one coherent concept.",
        ),
        (
            "Model errors",
            f"{errors['false positive']} FP · {errors['false negative']} FN",
            "Studies a reviewer called a false positive / a false negative.",
        ),
    ]


def verdicts_csv(bundle: accessors.Bundle) -> bytes:
    """Every verdict as CSV (one table, a ``kind`` column: case or latent; formula cells neutralised),
    UTF-8 with a byte-order mark so spreadsheets read accented names."""
    return vd.table_csv(vd.verdict_table(*_read(bundle))).encode("utf-8-sig")


def csv_file_name(bundle: accessors.Bundle) -> str:
    """The download's file name: ``verdicts-<bundle identity>.csv``."""
    return f"verdicts-{bundle_identity(bundle.manifest)[:12]}.csv"


# --- review sessions ---------------------------------------------------------------------------------------


def sessions(bundle: accessors.Bundle) -> rs.ReviewSessions:
    return rs.ReviewSessions.for_bundle(bundle.manifest, accessors.notes_location())


def session_names(bundle: accessors.Bundle) -> list[str]:
    return sessions(bundle).names()


def session_table(bundle: accessors.Bundle) -> pd.DataFrame:
    """The saved sessions: name, studies, author, created, updated (newest first)."""
    return sessions(bundle).table()


def load_session(bundle: accessors.Bundle, name: str) -> rs.ReviewSession:
    """The session called ``name`` (e.g. from ``?session=NAME``), the studies this bundle lacks marked
    missing (``.missing``; step through ``.present``). BundleError for an unknown or invalid name."""
    return sessions(bundle).load(name, known_studies=set(accessors.study_ids(bundle)))


def save_session(
    bundle: accessors.Bundle, name: str, items: Iterable[Any], *, overwrite: bool = True
) -> rs.ReviewSession:
    """Save a worklist as session ``name``: ``items`` are study ids, (study, note) pairs or {"study",
    "note"} records in order; signed with the sidebar's name (may be empty). ``overwrite=False`` refuses
    an existing name."""
    author = reviewer() or ""
    return sessions(bundle).save(name, items, author, overwrite=overwrite)


def rename_session(bundle: accessors.Bundle, old: str, new: str) -> rs.ReviewSession:
    return sessions(bundle).rename(old, new)


def delete_session(bundle: accessors.Bundle, name: str) -> bool:
    return sessions(bundle).delete(name)
