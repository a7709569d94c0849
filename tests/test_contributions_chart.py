"""The contribution bars of a case: one builder (Case review and Upload), largest |contribution| on top
whatever order the rows come in, and the order is in the spec (Vega keeps a previous dataset's order when
a chart with `sort: null` is redrawn with new data); the sign in words and a click selection of a bar's
latent. The clickable view: one rectangle per token over an inline image, selected by token."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import vl_convert

from mammo_sae.analysis.charts import contributions_chart, direction_words, token_picker_spec, with_outline
from mammo_sae.analysis.interventions import InterventionError


def contributions(seed: int, n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latents = rng.choice(500, size=n, replace=False)
    values = rng.normal(scale=0.05, size=n)
    return pd.DataFrame(
        {
            "latent": latents,
            "zbar": np.abs(values),
            "effect": np.sign(values),
            "contribution": values,
            "label": [f"#{t} name {t}" for t in latents],
        }
    )


def ranked_labels(table: pd.DataFrame) -> list[str]:
    order = np.lexsort((table["latent"].to_numpy(), -np.abs(table["contribution"].to_numpy())))
    return table["label"].to_numpy()[order].tolist()


def drawn_labels(chart) -> list[str]:
    """The y-axis labels of the rendered chart, top to bottom (vl-convert renders offline)."""
    svg = vl_convert.vegalite_to_svg(chart.to_json())
    return re.findall(r">(#\d+ name \d+)<", svg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bars_are_drawn_largest_first_whatever_the_row_order(seed: int) -> None:
    table = contributions(seed).sample(frac=1.0, random_state=seed)  # rows in no particular order
    chart = contributions_chart(table, "mass")
    assert chart.to_dict()["encoding"]["y"]["sort"] == ranked_labels(table), "the order is in the spec"
    assert drawn_labels(chart) == ranked_labels(table)


def test_bar_colours_follow_the_sign_in_words_and_the_axis_names_the_head() -> None:
    table = contributions(3)
    chart = contributions_chart(table, "calcification")
    spec = chart.to_dict()
    assert spec["encoding"]["x"]["title"] == "contribution to the calcification logit"
    raises, lowers = direction_words("calcification")
    assert (raises, lowers) == ("raises the calcification logit", "lowers the calcification logit")
    assert spec["encoding"]["color"]["scale"]["domain"] == [raises, lowers]
    words = dict(zip(chart.data["latent"], chart.data["direction"], strict=True))
    for latent, value in zip(table["latent"], table["contribution"], strict=True):
        assert words[latent] == (raises if value > 0 else lowers)
    svg = vl_convert.vegalite_to_svg(chart.to_json())
    assert raises in svg and lowers in svg, "the legend says it in words"


def test_a_selectable_chart_selects_one_bars_latent_by_click() -> None:
    spec = contributions_chart(contributions(5), "mass", selection="bar").to_dict()
    (param,) = spec["params"]
    assert (
        param["name"] == "bar"
        and param["select"]["fields"] == ["latent"]
        and param["select"]["on"] == "click"
    )
    assert "params" not in contributions_chart(contributions(5), "mass").to_dict()


def test_flags_lists_do_not_reach_the_spec() -> None:
    table = contributions(6).assign(flags=[["off_breast"]] * 12)
    assert "flags" not in contributions_chart(table, "mass").data.columns


def picture(height: int = 40, width: int = 30) -> str:
    import base64

    import cv2

    _, png = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()


def rects() -> pd.DataFrame:
    return pd.DataFrame(
        {"token": [0, 1, 2], "x0": [0.0, 10.0, 20.0], "y0": [0.0, 0.0, 30.0], "x1": [10.0, 20.0, 30.0], "y1": [10.0, 10.0, 40.0]}
    )  # fmt: skip


def test_the_token_picker_lays_a_clickable_rectangle_over_each_token() -> None:
    spec = token_picker_spec(picture(), (40, 30), rects())
    image, tokens = spec["layer"]
    assert image["mark"]["type"] == "image" and image["data"]["values"][0]["url"].startswith("data:image/")
    (param,) = tokens["params"]
    assert param["name"] == "spot" and param["select"] == {
        "type": "point",
        "fields": ["token"],
        "on": "click",
    }
    assert spec["width"] == 30 and spec["height"] == 40
    svg = vl_convert.vegalite_to_svg(json.dumps(spec))
    paths = re.findall(r'd="(M[^"]*)"', svg)
    # the view's frame, then one rectangle per token; y grows downwards, as on the image: token 2 (rows
    # 30..40) is drawn at the bottom
    assert paths == ["M0,0h30v40h-30Z", "M0,0h10v10h-10Z", "M10,0h10v10h-10Z", "M20,30h10v10h-10Z"]
    assert "http" not in "".join(re.findall(r'href="([^"]+)"', svg)), "nothing is fetched"


def test_the_rectangles_can_come_as_the_charts_own_data() -> None:
    spec = token_picker_spec(picture(), (40, 30), rects(), inline=False)
    assert "data" not in spec["layer"][1], "the rectangles are the chart's data, sent apart from the spec"
    spec["data"] = {"values": rects().to_dict("records")}  # what st.vega_lite_chart(rects, spec) amounts to
    paths = re.findall(r'd="(M[^"]*)"', vl_convert.vegalite_to_svg(json.dumps(spec)))
    assert paths == ["M0,0h30v40h-30Z", "M0,0h10v10h-10Z", "M10,0h10v10h-10Z", "M20,30h10v10h-10Z"]


def test_an_outline_lands_on_the_same_scales() -> None:
    spec = with_outline(token_picker_spec(picture(), (40, 30), rects()), rects().iloc[[1]])
    paths = re.findall(r'd="(M[^"]*)"', vl_convert.vegalite_to_svg(json.dumps(spec)))
    assert paths[-1] == "M10,0h10v10h-10Z" and len(paths) == 5, "token 1's rectangle, outlined on top"
    assert spec["layer"][-1]["mark"]["stroke"]


def test_the_token_picker_refuses_an_outside_image_and_bad_rectangles() -> None:
    with pytest.raises(InterventionError, match="data: URL"):
        token_picker_spec("https://example.org/x.png", (40, 30), rects())
    with pytest.raises(InterventionError, match="lack columns"):
        token_picker_spec(picture(), (40, 30), rects().drop(columns="token"))


def test_a_table_without_labels_or_with_repeated_labels_is_refused() -> None:
    table = contributions(4)
    with pytest.raises(InterventionError, match="lacks columns"):
        contributions_chart(table.drop(columns="label"), "mass")
    table.loc[1, "label"] = table.loc[0, "label"]
    with pytest.raises(InterventionError, match="its own label"):
        contributions_chart(table, "mass")
