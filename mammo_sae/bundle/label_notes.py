"""What a page says where a bundle cannot answer: the analysed images have no labels (an imported DICOM
folder), or the models were trained on phantoms and the images are not phantoms."""

from __future__ import annotations

from mammo_sae.bundle.reader import Bundle

#: beside every probability the models give on an image that is not a phantom, when they were trained on phantoms
MISMATCH_NOTICE = (
    "This model was trained on synthetic images: its outputs on a real mammogram mean nothing. "
    "Use a bundle built on real mammograms (VinDr-Mammo and the Mammo-CLIP weights) for real exams."
)


def inputs_are_phantoms(bundle: Bundle) -> bool:
    """Whether every analysed image is a phantom (a phantom root, or an imported folder of the generator's files)."""
    return bundle.synthetic


def mismatch_notice(models_synthetic: bool, input_is_phantom: bool) -> str | None:
    """The notice beside the probabilities when the models were trained on phantoms and the image scored is
    not one (None when they agree: phantom models on phantoms, or models trained on real mammograms)."""
    return MISMATCH_NOTICE if models_synthetic and not input_is_phantom else None


def bundle_mismatch_notice(bundle: Bundle) -> str | None:
    """The mismatch notice for the bundle's own images (None when the models and the images agree)."""
    return mismatch_notice(bundle.models_synthetic, inputs_are_phantoms(bundle))


def unlabelled_notice(bundle: Bundle, needs: str) -> str | None:
    """Why a page part that ``needs`` labels (e.g. "AUROC table") is empty: None for a labelled bundle."""
    if bundle.labelled:
        return None
    score = bundle.manifest["inputs"].get("score_dataset") or {}
    scored = bundle.manifest["inputs"].get("score_bundle") or {}
    source = (
        f", {score['name']} ({score['kind']})"
        if score
        else f", the bundle {scored['name']} ({scored['dataset_kind']})"
        if scored
        else ""
    )
    return (
        f"Without labels there is no {needs}: this bundle analysed an imported DICOM folder, which has no "
        f"findings, BI-RADS or density. Its codes, maps, evidence, top patches and per-case "
        f"interventions are all here; the concept ranking comes from its score data{source}."
    )


#: what the app writes beside a view whose laterality or view did not come from the DICOM's own tags
FROM_IMAGE, FROM_TEXT = "inferred from the image", "from the series text"


def orientation_tag(provenance: dict[str, object] | None) -> str | None:
    """The words beside one view: "inferred from the image" when its laterality or view was read from the
    pixels, "from the series text" when from the description text; None when both are the tags' own."""
    if provenance is None:
        return None
    kinds = {provenance.get("laterality_from"), provenance.get("view_from")}
    if "image" in kinds:
        return FROM_IMAGE
    return FROM_TEXT if "text" in kinds else None


def orientation_tags(bundle: Bundle, views: dict[str, str]) -> dict[str, str]:
    """``views``: hanging view name -> image id; returns the views that get words, with their words."""
    tags = {name: orientation_tag(bundle.orientation_of(image)) for name, image in views.items()}
    return {name: tag for name, tag in tags.items() if tag}


def orientation_summary(bundle: Bundle) -> str | None:
    """Where an imported folder's lateralities and views came from, e.g. "laterality from the tags 14, the
    series text 5, the image 5 · view from ..."; None for a bundle whose orientation is its CSV's."""
    imported = bundle.manifest["inputs"]["dataset"].get("imported")
    if not imported:
        return None
    counts = imported.get("orientation", {})
    places = (("tag", "the tags"), ("text", "the series text"), ("image", "the image"))
    parts = []
    for name in ("laterality", "view"):
        found = [
            f"{words} {counts[f'{name} from {kind}']:,}"
            for kind, words in places
            if counts.get(f"{name} from {kind}")
        ]
        if found:
            parts.append(f"{name} from {', '.join(found)}")
    return " · ".join(parts) or None
