"""What the reading screen's hanging viewer was sent, as an AppTest sees it."""

from __future__ import annotations

import json
from typing import Any

from streamlit.testing.v1 import AppTest


def shown_viewer(app: AppTest) -> tuple[dict[str, Any], list[int]]:
    """The viewer's spec and the byte size of each slot's pixels (0: none sent); AssertionError when the
    page drew no viewer."""
    components = [
        c for c in app.get("component_instance") if c.proto.component_name.endswith("hanging_viewer")
    ]
    assert len(components) == 1, f"{len(components)} hanging viewers on the page"
    proto = components[0].proto
    sizes = {a.key: len(a.bytes) for a in proto.special_args}
    spec = json.loads(proto.json_args)["spec"]
    return spec, [sizes.get(f"px{i}", 0) for i in range(len(spec["slots"]))]
