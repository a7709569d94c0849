"""The snapshot page laid out with Pillow: a title bar (study, overlay, a SYNTHETIC PHANTOMS badge for
phantom bundles), the 2 x 2 hanging on black (chest walls meeting at the centre line, each view's scores
under it), a white side panel (bundle, exam scores, legend, top latents, verdict) and a footer with the
research-use notice. Every text drawn is recorded with its box, so tests read the page as data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from mammo_sae.analysis.charts import NEGATIVE_COLOUR, POSITIVE_COLOUR
from mammo_sae.bundle.label_notes import MISMATCH_NOTICE
from mammo_sae.bundle.mark_drawing import HALO, draw_marks, font, percent
from mammo_sae.bundle.overlays import blend_diverging, blend_heatmap
from mammo_sae.bundle.render import DEFAULT_COLOUR, FINDING_COLOURS, MARK_COLOUR, RGB
from mammo_sae.bundle.viewer import PREDICTED_COLOUR, RenderedView

if TYPE_CHECKING:
    from mammo_sae.bundle.snapshot import SnapshotCase

A4_LANDSCAPE_INCHES = (297 / 25.4, 210 / 25.4)
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)

INK: RGB = (33, 37, 41)
MUTED: RGB = (110, 117, 125)
RULE: RGB = (206, 212, 218)
TITLE_BG: RGB = (26, 32, 44)
VIEWS_BG: RGB = (8, 8, 8)
SLOT_EDGE: RGB = (52, 52, 52)
SYNTHETIC_BG: RGB = (240, 140, 0)
WARNING_INK: RGB = (176, 42, 0)  # the mismatch notice: dark orange-red on the white panel
#: the mismatch notice's first sentence, in two lines that fit the panel
_HEAD, _TAIL = MISMATCH_NOTICE.split(". ")[0].split(": ", 1)
MISMATCH_LINES = (f"{_HEAD}:", f"{_TAIL}.")
NOTICE_BG: RGB = (139, 26, 26)
CAPTION: RGB = (235, 235, 235)
CAPTION_MUTED: RGB = (150, 150, 150)


def _rgb(hex_colour: str) -> RGB:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


@dataclass(frozen=True)
class DrawnText:
    text: str
    box: Box
    region: str  # "title", "views", "panel" or "footer"


@dataclass(frozen=True)
class PageLayout:
    width: int
    height: int
    unit: float  # pixels per layout unit (1 at 150 dpi)
    title: Box
    views: Box
    panel: Box
    footer: Box
    cells: tuple[Box, ...]  # the four hanging slots (image and caption), in hanging order
    image_height: int  # of a view's picture in its slot
    image_width: int  # at most

    def image_area(self, slot: int) -> Box:
        x0, y0, x1, _ = self.cells[slot]
        pad = round(8 * self.unit)
        return x0 + pad, y0 + pad, x1 - pad, y0 + pad + self.image_height


@dataclass(frozen=True)
class SnapshotPage:
    image: Image.Image
    layout: PageLayout
    texts: tuple[DrawnText, ...]
    pictures: tuple[Box | None, ...]  # where each slot's view was pasted (None: an empty slot)

    @property
    def lines(self) -> list[str]:
        return [t.text for t in self.texts]


def page_layout(case: SnapshotCase | None = None, dpi: int = 150) -> PageLayout:
    """Where everything goes on an A4 landscape page at ``dpi`` (the same for every case)."""
    width, height = (round(side * dpi) for side in A4_LANDSCAPE_INCHES)
    unit = dpi / 150
    title_h, footer_h = round(84 * unit), round(46 * unit)
    views_w = round(1150 * unit)
    views = (0, title_h, views_w, height - footer_h)
    row_h = (views[3] - views[1]) // 2
    cell_w = views_w // 2
    cells = tuple(
        (col * cell_w, title_h + row * row_h, (col + 1) * cell_w, title_h + (row + 1) * row_h)
        for row in range(2)
        for col in range(2)
    )
    caption_h = round(74 * unit)
    pad = round(8 * unit)
    return PageLayout(
        width=width,
        height=height,
        unit=unit,
        title=(0, 0, width, title_h),
        views=views,
        panel=(views_w, title_h, width, height - footer_h),
        footer=(0, height - footer_h, width, height),
        cells=cells,
        image_height=row_h - caption_h - 2 * pad,
        image_width=cell_w - 2 * pad,
    )


class _Painter:
    """Text and shapes on the page, each text recorded with its box."""

    def __init__(self, image: Image.Image, unit: float) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.unit = unit
        self.texts: list[DrawnText] = []

    def px(self, value: float) -> int:
        return round(value * self.unit)

    def width(self, text: str, size: float, bold: bool = False) -> int:
        left, _, right, _ = self.draw.textbbox((0, 0), text, font=font(self.px(size)), **self._weight(bold))
        return right - left

    def _weight(self, bold: bool) -> dict[str, float]:
        return {"stroke_width": 0.7 * self.unit} if bold else {}

    def fit(self, text: str, size: float, max_width: int, bold: bool = False) -> str:
        """``text``, cut with an ellipsis to ``max_width`` pixels."""
        if self.width(text, size, bold) <= max_width:
            return text
        while text and self.width(text + "…", size, bold) > max_width:
            text = text[:-1]
        return text.rstrip() + "…"

    def wrap(self, text: str, size: float, max_width: int, lines: int) -> list[str]:
        """``text`` broken into at most ``lines`` lines of ``max_width`` pixels (the last cut if needed)."""
        out: list[str] = []
        words = text.split()
        while words and len(out) < lines:
            line = words.pop(0)
            while words and self.width(line + " " + words[0], size) <= max_width:
                line += " " + words.pop(0)
            out.append(line)
        if words:
            out[-1] = self.fit(out[-1] + " " + " ".join(words), size, max_width)
        return [self.fit(line, size, max_width) for line in out]

    def text(
        self,
        xy: tuple[int, int],
        text: str,
        size: float,
        fill: RGB,
        region: str,
        *,
        bold: bool = False,
        align: str = "left",
    ) -> Box:
        """Draw ``text`` with its top at ``xy[1]``; ``align`` left / right / centre about ``xy[0]``."""
        face = font(self.px(size))
        weight = self._weight(bold)
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=face, **weight)
        x = xy[0] - {"left": 0, "right": right - left, "centre": (right - left) // 2}[align]
        self.draw.text((x - left, xy[1]), text, font=face, fill=fill, stroke_fill=fill, **weight)
        box = (x, xy[1] + top, x + right - left, xy[1] + bottom)
        self.texts.append(DrawnText(text, box, region))
        return box


# --- the page ----------------------------------------------------------------------------------------------------


def compose(case: SnapshotCase, views: Sequence[RenderedView | None], dpi: int = 150) -> SnapshotPage:
    """The snapshot page of ``case`` with its four rendered ``views`` (hanging order, None where absent)."""
    assert len(views) == len(case.slots) == 4, "four hanging slots"
    layout = page_layout(case, dpi)
    image = Image.new("RGB", (layout.width, layout.height), "white")
    paint = _Painter(image, layout.unit)
    _title(paint, layout, case)
    pictures = _views(image, paint, layout, case, views)
    _panel(paint, layout, case)
    _footer(paint, layout, case)
    return SnapshotPage(image, layout, tuple(paint.texts), pictures)


def _title(paint: _Painter, layout: PageLayout, case: SnapshotCase) -> None:
    x0, y0, x1, y1 = layout.title
    paint.draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=TITLE_BG)
    margin = paint.px(24)
    paint.text((margin, y0 + paint.px(12)), f"Case snapshot · study {case.study_short}", 27, (255, 255, 255),
               "title", bold=True)  # fmt: skip
    options = case.options
    details = [f"overlay: {case.overlay_text}", f"window: {options.preset or 'file default'}"]
    details += ["ground-truth boxes shown" if options.show_boxes else "ground-truth boxes hidden"]
    details += ["grey levels inverted"] if options.invert else []
    badge_left = x1
    if case.identity.synthetic:
        head, sub = "SYNTHETIC PHANTOMS", "generated images with planted lesions, not patient data"
        badge_w = max(paint.width(head, 28, bold=True), paint.width(sub, 14)) + paint.px(28)
        bx0, by0, bx1, by1 = x1 - margin - badge_w, y0 + paint.px(8), x1 - margin, y1 - paint.px(8)
        paint.draw.rounded_rectangle((bx0, by0, bx1, by1), radius=paint.px(8), fill=SYNTHETIC_BG)
        centre = (bx0 + bx1) // 2
        paint.text((centre, by0 + paint.px(7)), head, 28, (0, 0, 0), "title", bold=True, align="centre")
        paint.text((centre, by1 - paint.px(23)), sub, 14, (0, 0, 0), "title", align="centre")
        badge_left = bx0
    line = paint.fit(" · ".join(details), 16, badge_left - 2 * margin)
    paint.text((margin, y0 + paint.px(52)), line, 16, (200, 205, 212), "title")


def _fitted(view: RenderedView, box: Box) -> tuple[np.ndarray, float]:
    """The view's pixels shrunk (never grown) to fit ``box``, and its display scale after that."""
    pixels = view.pixels
    height, width = pixels.shape[:2]
    factor = min(1.0, (box[2] - box[0]) / width, (box[3] - box[1]) / height)
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))
    return pixels, view.scale * factor


def _views(
    image: Image.Image,
    paint: _Painter,
    layout: PageLayout,
    case: SnapshotCase,
    views: Sequence[RenderedView | None],
) -> tuple[Box | None, ...]:
    x0, y0, x1, y1 = layout.views
    paint.draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=VIEWS_BG)
    pictures: list[Box | None] = []
    for i, (slot, view) in enumerate(zip(case.slots, views, strict=True)):
        cell = layout.cells[i]
        paint.draw.rectangle((cell[0], cell[1], cell[2] - 1, cell[3] - 1), outline=SLOT_EDGE)
        area = layout.image_area(i)
        right_side = i % 2 == 0  # R views hug the centre line from the left, L views from the right
        if view is None or slot.position is None:
            pictures.append(None)
            _empty_slot(paint, area, slot.name, right_side)
        else:
            pixels, scale = _fitted(view, area)
            pixels = draw_marks(pixels, case.marks_on(slot.position), scale=scale, flipped=view.flipped)
            height, width = pixels.shape[:2]
            left = area[2] - width if right_side else area[0]
            image.paste(Image.fromarray(pixels), (left, area[1]))
            pictures.append((left, area[1], left + width, area[1] + height))
        _caption(paint, layout, i, slot, right_side)
    return tuple(pictures)


def _empty_slot(paint: _Painter, area: Box, name: str, right_side: bool) -> None:
    """A missing view: an outlined, hatched slot of a portrait view's size with its name."""
    height = area[3] - area[1]
    width = min(area[2] - area[0], round(height * 0.8))
    left = area[2] - width if right_side else area[0]
    box = (left, area[1], left + width, area[3])
    paint.draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(24, 24, 24), outline=(90, 90, 90),
                         width=max(1, paint.px(2)))  # fmt: skip
    centre_x, centre_y = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    paint.text((centre_x, centre_y - paint.px(26)), name, 26, CAPTION, "views", bold=True, align="centre")
    paint.text((centre_x, centre_y + paint.px(8)), "not in this study", 16, CAPTION_MUTED, "views",
               align="centre")  # fmt: skip


def _caption(paint: _Painter, layout: PageLayout, i: int, slot, right_side: bool) -> None:
    """Under a slot: its name and each head's score (a dot where it reaches the operating point), then
    where the head's evidence lies; aligned to the centre line like the view."""
    area = layout.image_area(i)
    top = area[3] + paint.px(8)
    size = 18
    parts: list[tuple[str, RGB, bool, bool]] = [(slot.name, (255, 255, 255), True, False)]
    for score in slot.scores:
        colour = CAPTION if score.passes is not False else CAPTION_MUTED
        parts.append(
            (f"{score.head} {percent(score.probability)}", colour, bool(score.passes), bool(score.passes))
        )
    gap, dot = paint.px(18), paint.px(12)
    widths = [paint.width(text, size, bold) + (dot + paint.px(6) if marked else 0)
              for text, _, bold, marked in parts]  # fmt: skip
    total = sum(widths) + gap * (len(parts) - 1)
    x = area[2] - total if right_side else area[0]
    for (text, colour, bold, marked), width in zip(parts, widths, strict=True):
        box = paint.text((x, top), text, size, colour, "views", bold=bold)
        if marked:  # the mark colour's dot: this view passes the head's operating point
            cy = (box[1] + box[3]) // 2
            dx = box[2] + paint.px(6)
            paint.draw.ellipse((dx, cy - dot // 2, dx + dot, cy + dot // 2), fill=MARK_COLOUR, outline=HALO)
        x += width + gap
    if slot.note:
        max_width = area[2] - area[0]
        for n, line in enumerate(paint.wrap(slot.note, 14, max_width, 2)):
            y = top + paint.px(28 + 19 * n)
            anchor = area[2] if right_side else area[0]
            paint.text((anchor, y), line, 14, CAPTION_MUTED, "views", align="right" if right_side else "left")


def _footer(paint: _Painter, layout: PageLayout, case: SnapshotCase) -> None:
    x0, y0, x1, y1 = layout.footer
    paint.draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=NOTICE_BG)
    margin = paint.px(24)
    paint.text((margin, y0 + paint.px(11)), case.notice, 21, (255, 255, 255), "footer", bold=True)
    stamp = f"taken {case.taken} · mammo-sae {case.version} · no patient-identifying data on this page"
    paint.text((x1 - margin, y0 + paint.px(15)), stamp, 14, (240, 220, 220), "footer", align="right")


# --- the side panel ------------------------------------------------------------------------------------------------


class _Column:
    """A top-to-bottom cursor through the panel; ``room`` says whether a line of height ``h`` still fits."""

    def __init__(self, paint: _Painter, layout: PageLayout) -> None:
        self.paint = paint
        margin = paint.px(22)
        self.left, self.right = layout.panel[0] + margin, layout.panel[2] - margin
        self.y, self.bottom = layout.panel[1] + paint.px(16), layout.panel[3] - paint.px(10)

    def room(self, h: float) -> bool:
        return self.y + self.paint.px(h) <= self.bottom

    def heading(self, text: str) -> None:
        paint = self.paint
        self.y += paint.px(6)
        paint.text((self.left, self.y), paint.fit(text, 18, self.right - self.left, bold=True), 18, INK, "panel",
                   bold=True)  # fmt: skip
        self.y += paint.px(25)
        paint.draw.line((self.left, self.y, self.right, self.y), fill=RULE, width=max(1, paint.px(1)))
        self.y += paint.px(7)

    def line(
        self, text: str, *, size: float = 15, colour: RGB = INK, bold: bool = False, indent: int = 0
    ) -> None:
        paint = self.paint
        left = self.left + paint.px(indent)
        paint.text(
            (left, self.y), paint.fit(text, size, self.right - left, bold), size, colour, "panel", bold=bold
        )
        self.y += paint.px(size + 6)

    def pairs(self, items: Sequence[tuple[str, str]], *, lines: int = 2) -> None:
        """``key: value`` lines, the key bold, long values wrapped."""
        paint = self.paint
        for key, value in items:
            if not self.room(21):
                return
            label = f"{key}: "
            key_w = paint.width(label, 15, bold=True)
            paint.text((self.left, self.y), label, 15, MUTED, "panel", bold=True)
            wrapped = paint.wrap(value, 15, self.right - self.left - key_w, lines) or [""]
            for n, text in enumerate(wrapped):
                if n and not self.room(21):
                    return
                paint.text((self.left + key_w, self.y), text, 15, INK, "panel")
                self.y += paint.px(21)


def _panel(paint: _Painter, layout: PageLayout, case: SnapshotCase) -> None:
    col = _Column(paint, layout)
    identity = case.identity
    col.heading("Bundle")
    kind = identity.dataset_kind + (" (SYNTHETIC: not patient data)" if identity.synthetic else "")
    col.pairs([("dataset", kind), ("backbone", identity.backbone), ("SAE", identity.sae),
               ("built", f"{identity.built} · run {identity.run}")], lines=1)  # fmt: skip
    if identity.mismatched:  # beside the probabilities, in the colour of a warning
        for text in MISMATCH_LINES:
            col.line(text, size=14, colour=WARNING_INK, bold=True)
    _exam_table(col, case)
    _legend(col, case)
    _latents_table(col, case)
    col.heading("Reviewer verdict" if len(case.verdicts) < 2 else f"Reviewer verdicts ({len(case.verdicts)})")
    if not case.verdicts:
        col.line("No verdict recorded for this case.", colour=MUTED)
    for items in case.verdicts:
        if not col.room(21):
            break
        col.pairs(items, lines=3)
        col.y += paint.px(6)


def _exam_table(col: _Column, case: SnapshotCase) -> None:
    paint = col.paint
    what = "calibrated probability" if case.calibrated else "probability, not calibrated"
    col.heading(f"Exam score per head ({what})")
    columns = [0, 150, 235, 300, 490]  # head, score, view, operating point, result (layout units)
    x = [col.left + paint.px(c) for c in columns]
    for text, at in zip(("head", "exam", "view", "operating point", "result"), x, strict=True):
        paint.text((at, col.y), text, 13, MUTED, "panel", bold=True)
    col.y += paint.px(20)
    for score in case.exam_scores:
        if not col.room(21):
            return
        if score.threshold is None:
            point = "none"
        elif not math.isfinite(score.threshold):
            point = "none: no negatives"
        else:
            point = f"{score.threshold:.0%}"
            rates = [f"{name} {value:.0%}" for name, value in (("sens", score.sensitivity), ("spec", score.specificity))
                     if value is not None and math.isfinite(value)]  # fmt: skip
            if rates:
                point += f" ({', '.join(rates)})"
        result = {True: "ABOVE", False: "below", None: "-"}[score.passes]
        paint.text((x[0], col.y), paint.fit(score.head, 15, x[1] - x[0] - paint.px(6), True), 15, INK, "panel",
                   bold=True)  # fmt: skip
        paint.text((x[1], col.y), percent(score.score), 15, INK, "panel")
        paint.text((x[2], col.y), score.view, 15, INK, "panel")
        paint.text((x[3], col.y), paint.fit(point, 15, x[4] - x[3] - paint.px(6)), 15, INK, "panel")
        box = paint.text(
            (x[4], col.y), result, 15, INK if score.passes else MUTED, "panel", bold=bool(score.passes)
        )
        if score.passes:  # the mark colour's dot, as after the view's score
            side, cy = paint.px(12), (box[1] + box[3]) // 2
            dx = box[2] + paint.px(6)
            paint.draw.ellipse(
                (dx, cy - side // 2, dx + side, cy + side // 2), fill=MARK_COLOUR, outline=HALO
            )
        col.y += paint.px(21)
    if not case.exam_scores:
        col.line("No scores.", colour=MUTED)


def _legend(col: _Column, case: SnapshotCase) -> None:
    paint = col.paint
    col.heading("Legend")
    swatch = paint.px(26)
    entries: list[tuple[str, str, RGB]] = [
        ("box", f"ground-truth {kind}", FINDING_COLOURS.get(kind, DEFAULT_COLOUR)) for kind in case.box_kinds
    ]
    if case.options.show_predicted and case.overlay != "none":
        entries.append(("box", "predicted box: where the map is strong", PREDICTED_COLOUR))
    entries.append(("ring", "CAD mark: the head and the view's score", MARK_COLOUR))
    entries.append(("dot", "after a view's score: at or above the head's operating point", MARK_COLOUR))
    for kind, text, colour in entries:
        if not col.room(22):
            return
        top = col.y + paint.px(2)
        box = (col.left, top, col.left + swatch, top + paint.px(15))
        if kind == "box":
            paint.draw.rectangle(box, outline=colour, width=max(2, paint.px(2)))
        elif kind == "dot":
            side = paint.px(12)
            cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
            paint.draw.ellipse((cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2), fill=colour,
                               outline=HALO)  # fmt: skip
        else:
            paint.draw.ellipse(box, outline=HALO, width=max(3, paint.px(4)))
            paint.draw.ellipse(box, outline=colour, width=max(2, paint.px(2)))
        right = col.left + swatch + paint.px(10)
        paint.text((right, col.y), paint.fit(text, 14, col.right - right), 14, INK, "panel")
        col.y += paint.px(22)
    _colour_bar(col, case)


def _colour_bar(col: _Column, case: SnapshotCase) -> None:
    """The overlay's colour scale as drawn on the views (same opacity and threshold, on mid grey)."""
    paint = col.paint
    if case.overlay == "none" or not col.room(48):
        return
    options = case.options
    width, height = col.right - col.left, paint.px(16)
    grey = np.full((height, width), 128, np.uint8)
    if case.overlay == "evidence map":
        ramp = np.broadcast_to(np.linspace(-1, 1, width, dtype=np.float32), (height, width))
        strip = blend_diverging(grey, np.ascontiguousarray(ramp), opacity=options.opacity,
                                threshold=options.threshold, vmax=1.0)  # fmt: skip
        vmax = case.vmax or 0.0
        labels = (f"lowers the {case.evidence_head} logit  -{vmax:.3g}", "0", f"+{vmax:.3g}  raises it")
    else:
        ramp = np.broadcast_to(np.linspace(0, 1, width, dtype=np.float32), (height, width))
        strip = blend_heatmap(grey, np.ascontiguousarray(ramp), colour_map=options.colour_map,
                              opacity=options.opacity, threshold=options.threshold)  # fmt: skip
        labels = ("0", "", "each view's own maximum")
    paint.image.paste(Image.fromarray(strip), (col.left, col.y))
    paint.draw.rectangle((col.left, col.y, col.right - 1, col.y + height - 1), outline=RULE)
    col.y += height + paint.px(3)
    paint.text((col.left, col.y), labels[0], 13, MUTED, "panel")
    if labels[1]:
        paint.text(((col.left + col.right) // 2, col.y), labels[1], 13, MUTED, "panel", align="centre")
    paint.text((col.right, col.y), labels[2], 13, MUTED, "panel", align="right")
    col.y += paint.px(20)


def _latents_table(col: _Column, case: SnapshotCase) -> None:
    paint = col.paint
    col.heading(case.contributions_title or "Top latents")
    columns = [0, 26, 292, 420, 500]  # rank, latent, flags, contribution, share (layout units)
    x = [col.left + paint.px(c) for c in columns]
    right_edge = col.right
    for text, at in zip(("", "latent", "flags", "contrib.", "share"), x, strict=True):
        paint.text((at, col.y), text, 13, MUTED, "panel", bold=True)
    col.y += paint.px(20)
    for rank, row in enumerate(case.contributions, start=1):
        if not col.room(21 + 40):  # leave room for the verdict below
            break
        colour = _rgb(POSITIVE_COLOUR if row.contribution > 0 else NEGATIVE_COLOUR)
        paint.text((x[0], col.y), str(rank), 14, MUTED, "panel")
        paint.text((x[1], col.y), paint.fit(row.label, 14, x[2] - x[1] - paint.px(8)), 14, INK, "panel")
        flags = ", ".join(row.flags) or "-"
        paint.text((x[2], col.y), paint.fit(flags, 13, x[3] - x[2] - paint.px(8)), 13,
                   (156, 54, 181) if row.flags else MUTED, "panel")  # fmt: skip
        paint.text((x[3], col.y), f"{row.contribution:+.3f}", 14, colour, "panel", bold=True)
        paint.text((right_edge, col.y), f"{row.share:+.0%}", 14, INK, "panel", align="right")
        col.y += paint.px(21)
    if not case.contributions:
        col.line("No latent contributes on this view.", colour=MUTED)
    elif col.room(36):
        col.line("contrib.: the latent's part of the logit (orange raises it, blue lowers it);", size=12,
                 colour=MUTED)  # fmt: skip
        col.line("share: its part of all latents' |contribution| to this logit on this view", size=12,
                 colour=MUTED)  # fmt: skip
