"""Hostile text for the app's untrusted-text tests: HTML and Markdown payloads as latent names and notes,
inside DICOM strings and in an uploaded file's name."""

from __future__ import annotations

from pathlib import Path

from mammo_sae.data.dicom import read_mammogram, write_mammogram

SCRIPT = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(2)>"
JS_LINK = "[click](javascript:alert(3))"
BOLD = "**bold**"
REMOTE_IMAGE = "![x](http://evil/x.png)"
PAYLOADS = (SCRIPT, IMG_TAG, JS_LINK, BOLD, REMOTE_IMAGE)

HTML_NAME = f"{SCRIPT} {IMG_TAG}"  # latent names hold at most 80 characters
MARKDOWN_NAME = f"{JS_LINK} {BOLD} {REMOTE_IMAGE}"
NOTE = " ".join(PAYLOADS)
MODEL_NAME = f"{REMOTE_IMAGE} {IMG_TAG}"  # ManufacturerModelName: a LO of at most 64 characters
WINDOW_NAME = f"{JS_LINK} {BOLD}"
UPLOAD_NAME = f"{JS_LINK} {BOLD}.dcm"


def hostile_dicom(source: Path, out: Path) -> Path:
    """``source``'s pixels in a DICOM whose model name and window name are payloads, at ``out``."""
    image = read_mammogram(source)
    tags = {
        "ManufacturerModelName": MODEL_NAME,
        "WindowCenter": "2048",
        "WindowWidth": "4096",
        "WindowCenterWidthExplanation": WINDOW_NAME,
    }
    write_mammogram(out, image.stored, laterality="L", view="CC", tags=tags)
    return out


def payload_dom_report(page) -> dict[str, list[str]]:
    """Elements of a Playwright ``page`` that a payload could have created (empty lists: none)."""
    return page.evaluate(
        """() => ({
            scripts: [...document.scripts].map(s => s.textContent).filter(t => t.includes('alert(')),
            images: [...document.images].map(i => i.getAttribute('src') || '')
                .filter(s => s === 'x' || s.includes('evil')),
            links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
                .filter(h => h.trim().toLowerCase().startsWith('javascript') || h.includes('//evil')),
            handlers: [...document.querySelectorAll('[onerror]')].map(e => e.outerHTML),
            bold: [...document.querySelectorAll('strong, b')].map(e => e.textContent)
                .filter(t => t === 'bold'),
        })"""
    )
