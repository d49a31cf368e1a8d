"""The HTML report as a person sees it: rendered by headless Chromium at 1280 px (issue 13, item 12).

Skipped where Chromium is absent (``apt-get install -y chromium``); the reason says so.
"""
from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess

import pytest

from sync.plan.models import Problem
from sync.report.render import render_report
from tests.report.test_report import sample_plan, summary_of

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: `apt-get install -y chromium` to run it")

# Measured in the page once it is laid out, and left in the DOM for --dump-dom to carry out.
PROBE = """<script>window.addEventListener('load', () => {
  const d = document.documentElement, h2 = document.querySelector('h2');
  const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1);
  document.body.setAttribute('data-probe', JSON.stringify({scroll: d.scrollWidth, width: innerWidth,
    totals: h2 ? [h2.textContent, h2.getBoundingClientRect().top] : null, wide: wide.length,
    text: document.body.innerText, font: getComputedStyle(document.body).fontSize}));
});</script>"""


def seen_in_chromium(page: str, tmp_path) -> dict:
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,900", "--virtual-time-budget=3000", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=90)
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    return json.loads(html_lib.unescape(found.group(1)))


def test_the_report_fits_1280_px_reads_russian_and_starts_with_the_totals(tmp_path):
    plan = sample_plan()
    # The worst a respondent can type: one long word with no place to break it.
    plan.answers[5].problems.append(Problem(code="invalid_email", severity="attention",
                                            params={"value": "x" * 300 + "@" + "y" * 200}))
    plan.answers[0].deals[0].title = "Цифровой_юрист_" * 30
    seen = seen_in_chromium(render_report(summary_of(plan), fmt="html", language="ru"), tmp_path)
    assert seen["scroll"] <= seen["width"] == 1280, "the page scrolls sideways"
    assert seen["wide"] == 0
    assert seen["totals"][0] == "Итоги" and seen["totals"][1] < 450  # the totals on the first screen
    text = seen["text"]
    assert text.startswith("Отчёт о синхронизации опросов с Bitrix24")
    assert "Пробный запуск: в Bitrix24 ничего не записано." in text and "Ð" not in text  # no mojibake
    assert float(seen["font"].removesuffix("px")) >= 14
