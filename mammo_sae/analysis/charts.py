"""Charts of intervention curves and of one case's latent contributions (Altair / Vega-Lite), a view that
can be clicked token by token, and an atomic writer for a chart's spec and PNG.

chart = curves_chart(table, metric="auroc", reference=paper_vindr)   # table from intervention_curves
save_chart(chart, "out/mass_auroc.vl.json", "out/mass_auroc.png", scale=2)
bars = contributions_chart(table, "mass", selection="bar")           # table from contributions + label
view = token_picker_spec(url, (480, 386), rects, selection="spot")   # a dict; rects: token, x0..y1

The x axis is ordinal (k_label), so k = 0 and "all" sit beside the powers of ten; rendering uses vl-convert,
which works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import vl_convert

from mammo_sae.analysis.interventions import InterventionError
from mammo_sae.core.atomic import atomic_write_bytes, atomic_write_text

METRIC_TITLES = {"auroc": "AUROC", "auprc": "AUPRC"}
THIS_RUN = "this run"
# Solid for this run, then dashed patterns for each reference source.
DASHES = ([1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3])
REQUIRED = ("concept", "head", "unit", "mode", "k_label")
POSITIVE_COLOUR, NEGATIVE_COLOUR = "#e0a040", "#5b8def"
CONTRIBUTION_COLUMNS = ("latent", "label", "contribution")
RECT_COLUMNS = ("token", "x0", "y0", "x1", "y1")
SPOT_COLOUR = "#39ff14"


def direction_words(head: str) -> tuple[str, str]:
    """The legend's words for a positive and a negative contribution to ``head``'s logit."""
    return f"raises the {head} logit", f"lowers the {head} logit"


def _k_value(label: str) -> float:
    """The k a label stands for ("all" = infinity), for ordering the x axis."""
    if label == "all":
        return float("inf")
    if not label.isdigit():
        raise InterventionError(f"k_label must be a non-negative integer or 'all'; got {label!r}")
    return int(label)


def _k_order(labels: pd.Series) -> list[str]:
    """The distinct k labels in increasing k (the PAPER_KS order for the paper's ks), "all" last."""
    return sorted(set(labels.astype(str)), key=_k_value)


def _panel_data(table: pd.DataFrame, metric: str, source: str | None) -> pd.DataFrame:
    """The columns the chart draws, with a source column (the table's own, else `source`)."""
    missing = [name for name in (*REQUIRED, metric) if name not in table.columns]
    if missing:
        raise InterventionError(f"the curve table lacks columns {missing}; pass intervention_curves output")
    if "source" not in table.columns and source is None:
        raise InterventionError(
            "the reference table needs a 'source' column naming where its numbers come from"
        )
    data = table[[*REQUIRED, metric]].copy()
    for name in REQUIRED:
        data[name] = data[name].astype(str)
    data["n_latents"] = table["n_latents"] if "n_latents" in table.columns else pd.NA
    data["source"] = table["source"].astype(str) if "source" in table.columns else source
    return data


def curves_chart(
    table: pd.DataFrame, *, metric: str = "auroc", reference: pd.DataFrame | None = None
) -> alt.Chart:
    """Line chart of `metric` against k (ordinal k_label), coloured by mode (keep / suppress), one column per
    head and one row per concept (per concept and unit when the table has several units); `reference` rows
    (same columns plus "source", e.g. the paper's VinDr numbers) are drawn dashed, one dash per source."""
    if metric not in METRIC_TITLES:
        raise InterventionError(f"metric must be one of {list(METRIC_TITLES)}; got {metric!r}")
    frames = [_panel_data(table, metric, THIS_RUN)]
    if reference is not None:
        frames.append(_panel_data(reference, metric, None))
    data = pd.concat(frames, ignore_index=True)
    several_units = data["unit"].nunique() > 1
    data["panel"] = data["concept"] + (" / " + data["unit"] if several_units else "")
    sources = list(dict.fromkeys(data["source"]))
    if len(sources) > len(DASHES):
        raise InterventionError(
            f"at most {len(DASHES) - 1} reference sources fit one chart; got {sources[1:]}"
        )
    title = METRIC_TITLES[metric]
    encodings = {
        "x": alt.X(
            "k_label:O",
            sort=_k_order(data["k_label"]),
            title="k (latents per class ranking; all = every latent)",
        ),
        "y": alt.Y(f"{metric}:Q", scale=alt.Scale(domain=[0, 1]), title=title),
        "color": alt.Color("mode:N", sort=["keep", "suppress"], title="intervention"),
        "strokeDash": alt.StrokeDash(
            "source:N",
            sort=sources,
            scale=alt.Scale(domain=sources, range=list(DASHES[: len(sources)])),
            legend=alt.Legend(symbolType="stroke"),
        ),
        "tooltip": ["source:N", "panel:N", "head:N", "mode:N", "k_label:O", "n_latents:Q", f"{metric}:Q"],
    }
    if data["head"].nunique() > 1:
        encodings["column"] = alt.Column("head:N", title="head")
    if data["panel"].nunique() > 1:
        encodings["row"] = alt.Row("panel:N", title="concept / unit" if several_units else "concept")
    subject = ", ".join(dict.fromkeys(data["concept"]))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(**encodings)
        .properties(
            width=260,
            height=180,
            title=f"Head {title} when keeping or suppressing the top-k {subject} latents (T_k(0) ∪ T_k(1))",
        )
    )


def contributions_chart(table: pd.DataFrame, head: str, *, selection: str | None = None) -> alt.Chart:
    """Horizontal bars of a case's latent contributions to ``head``'s logit, largest |contribution| on
    top whatever the table's row order (ties by latent id), orange where it raises the logit, blue where
    it lowers it, the legend saying so in words. The y order is written into the spec, so a chart redrawn
    with new data (another view of the case) cannot keep the previous data's order. ``selection`` names
    a click selection of one bar's ``latent`` (for ``st.altair_chart(on_select=...)``)."""
    missing = [name for name in CONTRIBUTION_COLUMNS if name not in table.columns]
    if missing:
        raise InterventionError(
            f"the contributions table lacks columns {missing}; label a contributions() table"
        )
    if table["label"].duplicated().any():
        raise InterventionError("every bar needs its own label; label the latents as '#id name'")
    data = table.drop(columns=[c for c in ("flags",) if c in table.columns])  # lists do not serialise
    data = data.assign(magnitude=data["contribution"].abs())
    data = data.sort_values(["magnitude", "latent"], ascending=[False, True], kind="stable")
    data = data.drop(columns="magnitude").reset_index(drop=True)
    data["rank"] = range(1, len(data) + 1)
    raises, lowers = direction_words(head)
    data["direction"] = [raises if c > 0 else lowers for c in data["contribution"]]
    tooltip = ["rank:Q", "latent:Q", "label:N", "direction:N", "contribution:Q"]
    tooltip += [f"{name}:Q" for name in ("zbar", "effect") if name in data.columns]
    chart = (
        alt.Chart(data)
        .mark_bar(cursor="pointer" if selection else "default")
        .encode(
            x=alt.X("contribution:Q", title=f"contribution to the {head} logit"),
            y=alt.Y("label:N", sort=data["label"].tolist(), title="latent", axis=alt.Axis(labelLimit=320)),
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(domain=[raises, lowers], range=[POSITIVE_COLOUR, NEGATIVE_COLOUR]),
                legend=alt.Legend(title=None, orient="bottom", labelLimit=0),
            ),
            tooltip=tooltip,
        )
    )
    if selection:
        chart = chart.add_params(alt.selection_point(name=selection, fields=["latent"], on="click"))
    return chart


def _placed(scales: dict[str, Any]) -> dict[str, Any]:
    """The encoding that puts a rectangle (x0, y0, x1, y1 in display pixels) on the view's scales."""
    return {
        "x": {"field": "x0", "type": "quantitative", "scale": scales["x"], "axis": None},
        "x2": {"field": "x1"},
        "y": {"field": "y0", "type": "quantitative", "scale": scales["y"], "axis": None},
        "y2": {"field": "y1"},
    }


def token_picker_spec(
    image_url: str,
    size: tuple[int, int],
    rects: pd.DataFrame,
    *,
    selection: str = "spot",
    inline: bool = True,
) -> dict[str, Any]:
    """A Vega-Lite spec of a rendered view (``image_url``, an inline data URL of ``size`` = (height, width)
    display pixels) with one transparent rectangle per token on top (``rects``: token, x0, y0, x1, y1 in
    display pixels, y down; row and col for the tooltip), so that a click selects a token (point selection
    ``selection`` on the field ``token``). Written as a plain dict: no schema validation on every rerun.
    ``inline=False`` leaves the rectangles out of the spec: they are then the chart's top-level data
    (``st.vega_lite_chart(rects, spec)`` sends them as one Arrow table, not a thousand JSON rows)."""
    missing = [name for name in RECT_COLUMNS if name not in rects.columns]
    if missing:
        raise InterventionError(
            f"the token rectangles lack columns {missing}; pass viewer.token_rects output"
        )
    if not image_url.startswith("data:"):
        raise InterventionError(
            "the view must be an inline data: URL (nothing may be fetched from elsewhere)"
        )
    height, width = (int(v) for v in size)
    scales = {
        "x": {"domain": [0, width], "nice": False, "zero": False},
        "y": {"domain": [0, height], "nice": False, "zero": False, "reverse": True},
    }
    columns = [c for c in ("token", "row", "col", "x0", "y0", "x1", "y1") if c in rects.columns]
    tooltip = [{"field": c, "type": "quantitative"} for c in ("row", "col") if c in rects.columns]
    picture = {"url": image_url, "x0": 0.0, "y0": 0.0, "x1": float(width), "y1": float(height)}
    tokens = {
        **({"data": {"values": rects[columns].to_dict("records")}} if inline else {}),
        "mark": {"type": "rect", "fill": "white", "fillOpacity": 0.001, "cursor": "crosshair", "aria": False},
        "encoding": {**_placed(scales), "tooltip": tooltip},
        "params": [{"name": selection, "select": {"type": "point", "fields": ["token"], "on": "click"}}],
    }
    return {
        "$schema": alt.SCHEMA_URL,
        "width": width,
        "height": height,
        "padding": 0,
        "autosize": {"type": "none"},
        "config": {"view": {"stroke": None}},
        "layer": [
            {
                "data": {"values": [picture]},
                "mark": {"type": "image", "aspect": False, "aria": False},
                "encoding": {**_placed(scales), "url": {"field": "url", "type": "nominal"}},
            },
            tokens,
        ],
    }


def with_outline(spec: dict[str, Any], rects: pd.DataFrame) -> dict[str, Any]:
    """A ``token_picker_spec`` with ``rects`` (token, x0, y0, x1, y1) outlined on top, on the same scales."""
    layers = spec["layer"]
    assert len(layers) >= 2 and layers[1]["mark"]["type"] == "rect", "a token picker spec: image, then tokens"
    encoding = {k: v for k, v in layers[1]["encoding"].items() if k in ("x", "x2", "y", "y2")}
    outline = {
        "data": {"values": rects[[c for c in RECT_COLUMNS if c in rects.columns]].to_dict("records")},
        "mark": {"type": "rect", "fill": None, "stroke": SPOT_COLOUR, "strokeWidth": 2, "aria": False},
        "encoding": encoding,
    }
    return {**spec, "layer": [*layers, outline]}


def save_chart(
    chart: alt.Chart, json_path: str | Path, png_path: str | Path | None = None, scale: float = 1.0
) -> None:
    """Write the chart's Vega-Lite spec to json_path and, optionally, a PNG rendered offline by vl-convert;
    both atomically (a reader never sees half a file)."""
    if scale <= 0:
        raise InterventionError(f"scale must be positive; got {scale}")
    spec_json = chart.to_json()
    atomic_write_text(json_path, spec_json)
    if png_path is not None:
        atomic_write_bytes(png_path, vl_convert.vegalite_to_png(spec_json, scale=scale))
