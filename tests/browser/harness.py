"""A real browser for the user journeys: Debian's Chromium, headless, driven by Playwright.

Chromium comes from Debian's package (installed with apt when missing, as the loopback services
are); Playwright only drives it (its own browser downloads are never used). Every page runs in a
context that keeps test traffic on this machine: a request to anything but loopback is refused
in the browser and recorded, so a page that reaches outside fails the journey instead of
depending on the internet. One exception is answered by a stand-in, named here so it stays
visible: the app's layout asks api.github.com for the project's star count on every page
(``layouts/AppLayout.vue`` upstream); the stand-in answers ``0``.

:class:`Journey` keeps a numbered screenshot per step and every console error, page error and
refused request, for the test's final assertions and for the run folder.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support import require
from yuxi_k8s import apt

CHROMIUM = Path("/usr/bin/chromium")
# fonts-wqy-microhei: the UI is Chinese; without a CJK font the screenshots show boxes.
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
PACKAGES = {"chromium": CHROMIUM, "fonts-wqy-microhei": CJK_FONT}
STAR_COUNT_API = "https://api.github.com/repos/xerrors/Yuxi"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def ensure_chromium() -> Path:
    """Debian's Chromium (and a CJK font), installed when missing; the test fails naming them if not."""
    try:
        apt.install(apt.missing(PACKAGES), recommends=False)
    except apt.AptError as exc:
        require(False, str(exc))
    require(CHROMIUM.exists(), f"{CHROMIUM} (Debian package chromium)")
    return CHROMIUM


@dataclass
class Journey:
    """What one browser journey saw: steps with screenshots, and what went wrong on the pages."""

    folder: Path
    page: Any  # playwright.sync_api.Page
    steps: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stand_ins: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        """A full-page screenshot named after the step, numbered in order."""
        self.steps.append(name)
        path = self.folder / f"{len(self.steps):02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def note(self, text: str) -> None:
        """A fact of the run for the report (journey.txt)."""
        self.notes.append(text)

    def problems(self) -> list[str]:
        return [*(f"console: {e}" for e in self.console_errors), *(f"refused: {u}" for u in self.refused)]

    def write_report(self) -> Path:
        report = self.folder / "journey.txt"
        lines = [f"steps: {', '.join(self.steps)}", *self.notes, *self.problems()]
        lines += [f"stand-in answered: {u}" for u in self.stand_ins]
        report.write_text("\n".join(lines) + "\n")
        return report


@contextlib.contextmanager
def journey(
    folder: Path, *, viewport: tuple[int, int] = (1400, 900), sites: Mapping[str, str] | None = None
) -> Iterator[Journey]:
    """A fresh headless Chromium page whose traffic stays on loopback; screenshots go to *folder*.

    *sites* maps a ``host:port`` the pages name to the loopback URL that reaches it here, as a
    user's machine resolves the site's own names (e.g. ``web:9000``, where the app's object URLs
    point, to a ``kubectl port-forward`` of the web Service's port 9000)."""
    from playwright.sync_api import Route, sync_playwright

    chromium = ensure_chromium()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with sync_playwright() as driver:
        # --no-sandbox: the tests run as root, where Chromium's own sandbox refuses to start.
        browser = driver.chromium.launch(executable_path=str(chromium), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            seen = Journey(folder, page)

            def route(r: Route) -> None:
                url = r.request.url
                parts = urlsplit(url)
                host = parts.hostname or ""
                if parts.netloc in (sites or {}):
                    # The request goes where the site's name leads from here; the page sees the answer.
                    local = (sites or {})[parts.netloc] + url.split(parts.netloc, 1)[1]
                    r.fulfill(response=r.fetch(url=local))
                elif host in LOOPBACK or url.startswith(("data:", "blob:")):
                    r.continue_()
                elif url.startswith(STAR_COUNT_API):
                    seen.stand_ins.append(url)
                    r.fulfill(json={"stargazers_count": 0})
                else:
                    seen.refused.append(url)
                    r.abort("blockedbyclient")

            context.route("**/*", route)
            page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: seen.console_errors.append(f"page error: {e}"))
            try:
                yield seen
            except BaseException:
                with contextlib.suppress(Exception):  # the page may be gone with the failure
                    seen.shot("failed")
                raise
        finally:
            browser.close()
            if "seen" in locals():
                seen.write_report()
