"""The front-end keeps no second copy of a Python decision: the duration text is the same string
(formatDuration run in node against format_duration), kinds and their names come from Python,
and each state colour is set once in the CSS for both widgets."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ops_widgets import Operation
from ops_widgets._text import format_duration, summary_line
from ops_widgets._types import KINDS, State
from ops_widgets.widgets._view import kind_label

JS = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")


def durations() -> list[float | None]:
    """Edges (minute, hour, rounding, clamping, non-finite) and a seeded spread of magnitudes."""
    edges: list[float | None] = [
        None, 0, -0.0, 0.4, 0.5, 0.49999999999999994, 0.5000000000000001, 1.5, 2.5, 59, 59.4, 59.5,
        60, 61, 72, 72.5, 119.5, 599.5, 3599, 3599.49, 3599.5, 3600, 3660, 3661, 7199.5, 35999.5, 86400,
        86399.5, 360000, 1e9, -0.4, -0.5, -0.6, -1, -3600, -1e300, 2**52 + 0.5, 2**53 - 1, 2**53, 2**53 + 2,
        2**60, 1e21, 1e300, 5e-324, math.inf, -math.inf, math.nan,
    ]
    edges += [n + 0.5 for n in range(0, 7200, 397)]  # ties: Python's round() would go to even
    rng = random.Random(20250101)
    spread = [rng.uniform(-5, 10) * 10 ** rng.uniform(0, 6) for _ in range(160)]
    return edges + spread


def as_js_text(value: float | None) -> str | None:
    """A number as text JS Number() reads back to the same double (repr is shortest round-trip)."""
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_duration_text_is_pythons() -> None:
    values = durations()
    assert len(values) >= 200
    script = (
        "import { readFileSync } from 'node:fs';\n"
        f"import {{ formatDuration }} from {json.dumps((JS / 'widgets.js').as_uri())};\n"
        "const xs = JSON.parse(readFileSync(0, 'utf8'));\n"
        "process.stdout.write(JSON.stringify(xs.map((x) => formatDuration(x === null ? null : Number(x)))));\n"
    )
    done = subprocess.run(
        [str(NODE), "--input-type=module", "-e", script],
        input=json.dumps([as_js_text(v) for v in values]), capture_output=True, text=True, timeout=60, check=True,
    )
    got = json.loads(done.stdout)
    wrong = [(v, js, format_duration(v)) for v, js in zip(values, got, strict=True) if js != format_duration(v)]
    assert not wrong, f"JS and Python disagree (value, JS, Python): {wrong[:10]}"


def test_duration_text() -> None:
    assert [format_duration(s) for s in (None, math.nan, -5, 0.4, 2.5, 59.5, 72, 3599.5, 3725)] == [
        "", "", "0s", "0s", "3s", "1m 00s", "1m 12s", "1h 00m", "1h 02m"]


def test_repr_line_is_the_readmes() -> None:
    op = Operation.from_api_response({"name": "tunedModels/t/operations/o", "metadata": {"completedPercent": 42}})
    assert summary_line(op, 72.3) == "tunedModels/t/operations/o  running  42%  1m 12s"


def test_js_keeps_no_list_of_kinds() -> None:
    source = (JS / "widgets.js").read_text()
    listed = [k for k in KINDS if re.search(rf"""(?<!el\()["'`]{k}["'`]|\b{k}\s*:""", source)]
    assert not listed, f"widgets.js names kinds {listed}: labels come from Python (kind_label)"
    assert [kind_label(k) for k in KINDS] == ["video", "tuning", "import", "batch", "operation"]


def test_each_state_colour_is_set_once_for_both_widgets() -> None:
    css = (JS / "widgets.css").read_text()
    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", re.sub(r"/\*.*?\*/", "", css, flags=re.S))
    for state in [s.value for s in State if s.value != "running"] + ["cancelling"]:
        setting = [sel.strip() for sel, body in rules if f'data-state="{state}"' in sel and "--opw-state" in body]
        assert len(setting) == 1, (state, setting)
        assert ".opw[" in setting[0] and ".opt " in setting[0], setting  # one rule, both widgets
    # Nothing else paints a state colour: each appears in exactly one declaration.
    for colour in ("--jp-warn-color1", "--jp-success-color1", "--jp-layout-color4", FILTERED_AMBER):
        assert css.count(colour) == 1, colour
    assert "opt-badge-" not in css


def test_js_states_are_pythons_in_order() -> None:
    """The table's state checkboxes (one per state, in the frame's category order)."""
    source = (JS / "widgets.js").read_text()
    listed = re.search(r"const STATES = (\[[^\]]*\]);", source)
    assert listed, "widgets.js lists the states as const STATES = [...]"
    assert json.loads(listed.group(1)) == [s.value for s in State]
    full = re.search(r"const FULL = new Set\((\[[^\]]*\])\);", source)
    assert full and set(json.loads(full.group(1))) == {"succeeded", "filtered"}  # their bars show 100%
    assert "FULL.has(state) ? 100" in source


# Badge text is --jp-ui-inverse-font-color1, the filtered colour mixes toward
# --jp-inverse-layout-color0 (values from JupyterLab 4's light, dark and dark high-contrast themes).
FILTERED_AMBER = "#ffa000"
THEMES = {  # inverse layout colour, badge text colour (r, g, b, alpha)
    "light": ((0x11, 0x11, 0x11), (255, 255, 255, 1.0)),
    "dark": ((255, 255, 255), (0, 0, 0, 0.8)),
    "dark-high-contrast": ((255, 255, 255), (0, 0, 0, 1.0)),
}


def luminance(rgb: tuple[float, ...]) -> float:
    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_filtered_badge_text_reads_in_light_and_dark_themes() -> None:
    css = re.sub(r"/\*.*?\*/", "", (JS / "widgets.css").read_text(), flags=re.S)
    m = re.search(r'data-state="filtered"\][^{]*\{\s*--opw-state:\s*color-mix\(in srgb,\s*(#[0-9a-f]{6})\s+(\d+)%,'
                  r"\s*var\(--jp-inverse-layout-color0,\s*#111\)\);", css)
    assert m, "the filtered colour is an amber mixed toward --jp-inverse-layout-color0"
    amber = tuple(int(m.group(1)[i:i + 2], 16) for i in (1, 3, 5))
    share = int(m.group(2)) / 100
    for theme, (inverse, (tr, tg, tb, ta)) in THEMES.items():
        badge = tuple(a * share + i * (1 - share) for a, i in zip(amber, inverse, strict=True))
        text = tuple(c * ta + k * (1 - ta) for c, k in zip((tr, tg, tb), badge, strict=True))  # alpha over the badge
        assert contrast(badge, text) >= 4.5, theme  # WCAG AA for the badge's small text


def test_js_listens_to_named_traits_and_keeps_functions_short() -> None:
    """Views listen to change:<trait> (a bare "change" fires for traits they never show), and no
    function of the module runs past ~100 lines."""
    source = (JS / "widgets.js").read_text()
    assert not re.search(r"""\.on\(\s*["'`]change["'`]""", source), "listen to change:<trait>, not to every change"
    lines = source.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"(async )?function \w+", line)]
    for start in starts:
        end = next(i for i in range(start, len(lines)) if lines[i] == "}")
        assert end - start + 1 <= 100, f"{lines[start][:40]!r} is {end - start + 1} lines"
