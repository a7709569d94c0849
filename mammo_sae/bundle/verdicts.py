"""Reviewers' verdicts on cases and latents, kept beside the latent notes in the user's data folder.

Per case (a study) a reviewer records whether the evidence falls on the finding (yes / partly / no, or not
judged: a study without a finding), whether the case is a model error (no / false positive / false
negative) and a free note; per latent, whether its top patches show one coherent concept (yes / no /
unsure). Each verdict carries the reviewer's name and the UTC time of its save, and is keyed by (item,
reviewer): two reviewers never overwrite each other, and a reviewer's later save replaces their own (names
are compared with whitespace collapsed and case ignored; the name as last typed is kept).

Storage: ``BASE/<identity>/verdicts.json`` (``notes_folder``; never in the bundle), written under
``verdicts.lock`` by ``locked_json.update``::

    {"cases":   {"<study>":  {"<reviewer key>": {"reviewer": "Dr. Ada", "evidence": "yes" | "partly" |
                                                  "no" | null, "model_error": "no", "note": "",
                                                  "updated": "2026-12-02T08:00:00+00:00"}}},
     "latents": {"<latent>": {"<reviewer key>": {"reviewer": "Dr. Ada", "coherent": "unsure",
                                                  "updated": "..."}}}}

The CSV export is one table with a ``kind`` column (``case`` or ``latent``); a cell that a spreadsheet
would run as a formula (starting with = + - @, a tab or a carriage return) gets a leading apostrophe.
Names and notes are untrusted: show them as text.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.locked_json import damaged, read_mapping, update
from mammo_sae.bundle.notes import notes_folder
from mammo_sae.bundle.spreadsheet import safe_csv

VERDICTS_FILE = "verdicts.json"
EVIDENCE = ("yes", "partly", "no")
MODEL_ERRORS = ("no", "false positive", "false negative")
COHERENT = ("yes", "no", "unsure")
MAX_REVIEWER, MAX_NOTE, MAX_STUDY = 80, 2000, 128
CSV_COLUMNS = ["kind", "item", "reviewer", "evidence", "model_error", "coherent", "note", "updated"]
CONTENT = "a mapping with the case and latent verdicts"


def _printable(text: str) -> bool:
    return not any(unicodedata.category(ch).startswith("C") for ch in text)


def reviewer_name(name: object) -> str:
    """``name`` with its whitespace collapsed; a BundleError when it is empty, too long or not plain text."""
    name = " ".join(str(name or "").split())
    if not name:
        raise BundleError("a verdict needs the reviewer's name: type your name first")
    if len(name) > MAX_REVIEWER or not _printable(name):
        raise BundleError(f"a reviewer's name is plain text of at most {MAX_REVIEWER} characters")
    return name


def reviewer_key(name: object) -> str:
    """The storage key of a reviewer: the normalised name with case ignored."""
    return reviewer_name(name).casefold()


def study_key(study: object) -> str:
    study = "" if study is None else str(study).strip()
    if not study or len(study) > MAX_STUDY or not _printable(study):
        raise BundleError(f"a study id is plain text of 1..{MAX_STUDY} characters, got {study[:40]!r}")
    return study


def _choice(value: object, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise BundleError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CaseVerdict:
    study: str
    reviewer: str
    evidence: str | None  # yes / partly / no; None = not judged (e.g. a study without a finding)
    model_error: str  # no / false positive / false negative
    note: str
    updated: str  # UTC, ISO 8601


@dataclass(frozen=True)
class LatentVerdict:
    latent: int
    reviewer: str
    coherent: str  # yes / no / unsure
    updated: str


@dataclass(frozen=True)
class CaseAgreement:
    """The verdicts of one study that more than one reviewer judged."""

    study: str
    reviewers: tuple[str, ...]
    evidence: tuple[str | None, ...]  # in the order of ``reviewers``
    model_errors: tuple[str, ...]
    agree: bool  # every reviewer gave the same evidence answer and the same model-error answer


@dataclass(frozen=True)
class Agreement:
    """The verdicts so far, summed up for the Overview."""

    cases_reviewed: int  # studies with a verdict from anyone
    case_verdicts: int
    evidence_judged: int  # case verdicts that answered "evidence on the finding"
    evidence_yes: int
    evidence_partly: int
    model_errors: dict[str, int]  # false positive / false negative -> studies that a reviewer called so
    per_case: tuple[CaseAgreement, ...]  # the studies judged by two reviewers or more
    latents_judged: int
    coherent_latents: tuple[int, ...]  # judged "yes" by at least two reviewers
    reviewers: tuple[str, ...]

    @property
    def share_yes(self) -> float | None:
        return self.evidence_yes / self.evidence_judged if self.evidence_judged else None

    @property
    def share_yes_or_partly(self) -> float | None:
        judged = self.evidence_judged
        return (self.evidence_yes + self.evidence_partly) / judged if judged else None

    @property
    def agreed(self) -> int:
        return sum(case.agree for case in self.per_case)


def _check(data: Mapping[str, Any], path: Path) -> None:
    """Refuse a file whose structure is not the one this module writes (a hand edit, another tool)."""
    unknown = set(data) - {"cases", "latents"}
    if unknown:
        raise damaged(path, f"holds unknown sections {sorted(unknown)}")
    fields = {"cases": ("evidence", "model_error", "note"), "latents": ("coherent",)}
    for section, needed in fields.items():
        items = data.get(section, {})
        if not isinstance(items, dict):
            raise damaged(path, f"has a {section!r} section that is not a mapping")
        for item, entries in items.items():
            if section == "latents" and not item.isdigit():
                raise damaged(path, f"names a latent {item[:40]!r} that is not a number")
            if not isinstance(entries, dict) or not all(
                isinstance(entry, dict)
                and isinstance(entry.get("reviewer"), str)
                and set(needed) <= set(entry)
                for entry in entries.values()
            ):
                raise damaged(path, f"holds a malformed verdict on {section[:-1]} {item[:40]!r}")


def _case(study: str, entry: Mapping[str, Any]) -> CaseVerdict:
    return CaseVerdict(
        study,
        entry["reviewer"],
        entry["evidence"],
        entry["model_error"],
        entry.get("note", ""),
        entry.get("updated", ""),
    )


def _latent(latent: str, entry: Mapping[str, Any]) -> LatentVerdict:
    return LatentVerdict(int(latent), entry["reviewer"], entry["coherent"], entry.get("updated", ""))


class Verdicts:
    """The case and latent verdicts of one bundle, in ``folder`` (see ``for_bundle``)."""

    def __init__(self, folder: str | os.PathLike[str], d_sae: int | None = None) -> None:
        self.folder, self.d_sae = Path(folder), d_sae

    @classmethod
    def for_bundle(cls, manifest: Mapping[str, Any], base: str | os.PathLike[str]) -> Verdicts:
        """The verdicts of the bundle with ``manifest``, beside its notes under the notes location ``base``."""
        return cls(notes_folder(manifest, base), int(manifest["sae"]["d_sae"]))

    @property
    def path(self) -> Path:
        return self.folder / VERDICTS_FILE

    def _data(self) -> dict[str, Any]:
        data = read_mapping(self.path, CONTENT)
        _check(data, self.path)
        return data

    def _update(self, change) -> Any:
        return update(self.path, "the verdicts", CONTENT, change, check=lambda data: _check(data, self.path))

    def _latent_key(self, latent: int) -> str:
        latent = int(latent)
        top = "" if self.d_sae is None else f"..{self.d_sae - 1}"
        if latent < 0 or (self.d_sae is not None and latent >= self.d_sae):
            raise BundleError(f"latent {latent} is outside 0{top}")
        return str(latent)

    # --- reading -------------------------------------------------------------------------------------------

    def cases(self) -> list[CaseVerdict]:
        """Every case verdict, by study then reviewer."""
        return [
            _case(study, entry)
            for study, entries in sorted(self._data().get("cases", {}).items())
            for _, entry in sorted(entries.items())
        ]

    def latents(self) -> list[LatentVerdict]:
        """Every latent verdict, by latent then reviewer."""
        return [
            _latent(latent, entry)
            for latent, entries in sorted(self._data().get("latents", {}).items(), key=lambda kv: int(kv[0]))
            for _, entry in sorted(entries.items())
        ]

    def case_verdicts(self, study: str) -> list[CaseVerdict]:
        """Every reviewer's verdict on ``study``."""
        study = study_key(study)
        entries = self._data().get("cases", {}).get(study, {})
        return [_case(study, entry) for _, entry in sorted(entries.items())]

    def case_verdict(self, study: str, reviewer: str) -> CaseVerdict | None:
        """``reviewer``'s verdict on ``study``, or None."""
        study, key = study_key(study), reviewer_key(reviewer)
        entry = self._data().get("cases", {}).get(study, {}).get(key)
        return None if entry is None else _case(study, entry)

    def latent_verdicts(self, latent: int) -> list[LatentVerdict]:
        key = self._latent_key(latent)
        entries = self._data().get("latents", {}).get(key, {})
        return [_latent(key, entry) for _, entry in sorted(entries.items())]

    def latent_verdict(self, latent: int, reviewer: str) -> LatentVerdict | None:
        key, who = self._latent_key(latent), reviewer_key(reviewer)
        entry = self._data().get("latents", {}).get(key, {}).get(who)
        return None if entry is None else _latent(key, entry)

    def reviewed_studies(self) -> set[str]:
        """The studies that anyone has given a verdict."""
        return {study for study, entries in self._data().get("cases", {}).items() if entries}

    # --- saving --------------------------------------------------------------------------------------------

    def save_case(
        self, study: str, reviewer: str, *, evidence: str | None, model_error: str = "no", note: str = ""
    ) -> CaseVerdict:
        """Record ``reviewer``'s verdict on ``study`` (replacing their earlier one), stamped with the UTC time."""
        study, name = study_key(study), reviewer_name(reviewer)
        if evidence is not None:
            evidence = _choice(evidence, EVIDENCE, "evidence on the finding")
        model_error = _choice(model_error, MODEL_ERRORS, "model error")
        note = str(note).strip()
        if len(note) > MAX_NOTE:
            raise BundleError(f"a verdict's note holds at most {MAX_NOTE} characters, this one {len(note)}")
        entry = {"reviewer": name, "evidence": evidence, "model_error": model_error, "note": note}
        entry["updated"] = _now()

        def change(data: dict[str, Any]) -> None:
            data.setdefault("cases", {}).setdefault(study, {})[name.casefold()] = entry

        self._update(change)
        return _case(study, entry)

    def save_latent(self, latent: int, reviewer: str, coherent: str) -> LatentVerdict:
        """Record whether ``reviewer`` finds ``latent``'s top patches one coherent concept."""
        key, name = self._latent_key(latent), reviewer_name(reviewer)
        entry = {
            "reviewer": name,
            "coherent": _choice(coherent, COHERENT, "coherent concept"),
            "updated": _now(),
        }

        def change(data: dict[str, Any]) -> None:
            data.setdefault("latents", {}).setdefault(key, {})[name.casefold()] = entry

        self._update(change)
        return _latent(key, entry)

    def _remove(self, section: str, item: str, reviewer: str) -> bool:
        who = reviewer_key(reviewer)

        def change(data: dict[str, Any]) -> bool:
            entries = data.get(section, {}).get(item, {})
            removed = entries.pop(who, None) is not None
            if not entries:
                data.get(section, {}).pop(item, None)
            return removed

        return bool(self._update(change))

    def remove_case(self, study: str, reviewer: str) -> bool:
        """Withdraw ``reviewer``'s verdict on ``study``; False when there was none."""
        return self._remove("cases", study_key(study), reviewer)

    def remove_latent(self, latent: int, reviewer: str) -> bool:
        return self._remove("latents", self._latent_key(latent), reviewer)

    # --- summaries -----------------------------------------------------------------------------------------

    def table(self) -> pd.DataFrame:
        return verdict_table(self.cases(), self.latents())

    def to_csv(self) -> str:
        return table_csv(self.table())

    def agreement(self) -> Agreement:
        return agreement(self.cases(), self.latents())


def verdict_table(cases: Iterable[CaseVerdict], latents: Iterable[LatentVerdict]) -> pd.DataFrame:
    """Both kinds in one table (``CSV_COLUMNS``; the cells a kind does not have are empty)."""
    rows = [
        {"kind": "case", "item": v.study, "reviewer": v.reviewer, "evidence": v.evidence or "",
         "model_error": v.model_error, "coherent": "", "note": v.note, "updated": v.updated}
        for v in cases
    ] + [
        {"kind": "latent", "item": str(v.latent), "reviewer": v.reviewer, "evidence": "",
         "model_error": "", "coherent": v.coherent, "note": "", "updated": v.updated}
        for v in latents
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def table_csv(table: pd.DataFrame) -> str:
    """``table`` as CSV, every text cell that could start a formula neutralised."""
    return safe_csv(table)


def agreement(cases: Iterable[CaseVerdict], latents: Iterable[LatentVerdict]) -> Agreement:
    """How many cases were reviewed, what share of case verdicts put the evidence on the finding, where
    reviewers agree, which latents at least two reviewers call coherent, and the model errors by kind
    (a study counts once per kind that any reviewer gave it)."""
    cases, latents = list(cases), list(latents)
    by_study: dict[str, list[CaseVerdict]] = {}
    for verdict in cases:
        by_study.setdefault(verdict.study, []).append(verdict)
    evidence = Counter(v.evidence for v in cases)
    per_case = tuple(
        CaseAgreement(
            study,
            tuple(v.reviewer for v in verdicts),
            tuple(v.evidence for v in verdicts),
            tuple(v.model_error for v in verdicts),
            len({(v.evidence, v.model_error) for v in verdicts}) == 1,
        )
        for study, verdicts in sorted(by_study.items())
        if len(verdicts) > 1
    )
    errors = {
        kind: sum(any(v.model_error == kind for v in verdicts) for verdicts in by_study.values())
        for kind in MODEL_ERRORS[1:]
    }
    coherent = Counter(v.latent for v in latents if v.coherent == "yes")
    reviewers = {v.reviewer.casefold(): v.reviewer for v in [*cases, *latents]}
    return Agreement(
        cases_reviewed=len(by_study),
        case_verdicts=len(cases),
        evidence_judged=len(cases) - evidence[None],
        evidence_yes=evidence["yes"],
        evidence_partly=evidence["partly"],
        model_errors=errors,
        per_case=per_case,
        latents_judged=len({v.latent for v in latents}),
        coherent_latents=tuple(sorted(t for t, n in coherent.items() if n >= 2)),
        reviewers=tuple(sorted(reviewers.values(), key=str.casefold)),
    )


def agreement_table(summary: Agreement) -> pd.DataFrame:
    """One row per study judged by several reviewers: who, their answers and whether they agree."""
    rows = [
        {
            "study": case.study,
            "reviewers": len(case.reviewers),
            "evidence on the finding": ", ".join(e or "not judged" for e in case.evidence),
            "model error": ", ".join(case.model_errors),
            "agree": case.agree,
        }
        for case in summary.per_case
    ]
    return pd.DataFrame(
        rows, columns=["study", "reviewers", "evidence on the finding", "model error", "agree"]
    )
