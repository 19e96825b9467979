"""Check the built site in a headless browser, as a reader at 1280 px sees it.

    mkdocs build --strict && python docs/check_site.py site [--shots DIR]

Every page is opened at 1280 x 900 (``make test-site`` installs Debian's chromium and runs
this). A page fails when it is wider than the window (something runs off the right edge), when
a table wider than the text does not scroll inside its own box, or when a figure is shown at
less than two thirds of its width and cannot be enlarged (no lightbox link around it). The
navigation must group the pages under at most :data:`MAX_TABS` tabs. Prints one line per
problem and exits with 1 if there is any; ``--shots DIR`` saves a screenshot of each page.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from pathlib import Path

WIDTH, HEIGHT = 1280, 900
MAX_TABS = 6
CHROMIUM = "/usr/bin/chromium"
#: Run in each page: what overflows, and which figures are shrunk without a way to enlarge them.
MEASURE = """() => {
  const tables = [...document.querySelectorAll("table")].filter(t => {
    for (let box = t.parentElement; box && box !== document.body; box = box.parentElement) {
      const overflow = getComputedStyle(box).overflowX;
      if (overflow === "auto" || overflow === "scroll")  // scrolls inside this box
        return box.getBoundingClientRect().right > innerWidth;
    }
    return t.getBoundingClientRect().right > innerWidth;
  }).length;
  const figures = [...document.querySelectorAll("img")].filter(img => !img.closest("header, nav") &&
    img.naturalWidth > 1.5 * img.getBoundingClientRect().width && !img.closest("a.glightbox")
  ).map(img => img.getAttribute("src"));
  const tabs = document.querySelectorAll(".md-tabs__item").length;
  return {width: document.documentElement.scrollWidth, tables, figures, tabs};
}"""


def pages(site: Path) -> list[str]:
    """The site's pages as paths relative to its root (``""`` for the home page)."""
    found = []
    for path in sorted(site.rglob("index.html")):
        relative = path.parent.relative_to(site).as_posix()
        if relative.startswith(("assets", "search")) or relative == "404":
            continue
        found.append("" if relative == "." else relative + "/")
    return sorted(found)


def problems_of(page: str, measured: dict) -> list[str]:
    """The problems of one page from what :data:`MEASURE` returned.

    >>> problems_of("claims/", {"width": 1400, "tables": 0, "figures": [], "tabs": 5})
    ['claims/: the page is 1400 px wide in a 1280 px window']
    """
    found = []
    if measured["width"] > WIDTH:
        found.append(f"{page}: the page is {measured['width']} px wide in a {WIDTH} px window")
    if measured["tables"]:
        found.append(f"{page}: {measured['tables']} table(s) run off the right edge without "
                     "scrolling")
    found += [f"{page}: figure {src} is shrunk and cannot be enlarged"
              for src in measured["figures"]]
    if measured["tabs"] > MAX_TABS:
        found.append(f"{page}: {measured['tabs']} navigation tabs (at most {MAX_TABS})")
    return found


def check(site: Path, shots: Path | None = None) -> list[str]:
    """Open every page of the built ``site`` and return its problems."""
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{server.server_address[1]}/"
    found = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            tab = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            for page in pages(site):
                tab.goto(root + page, wait_until="load")
                found += problems_of(page or "/", tab.evaluate(MEASURE))
                if shots:
                    shots.mkdir(parents=True, exist_ok=True)
                    name = page.strip("/").replace("/", "_") or "index"
                    tab.screenshot(path=str(shots / f"{name}.png"))
            browser.close()
    finally:
        server.shutdown()
    return found


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build)")
    parser.add_argument("--shots", type=Path, help="save a screenshot of each page here")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").exists():
        print(f"error: no built site at {args.site}: run `mkdocs build` first", file=sys.stderr)
        return 2
    found = check(args.site, args.shots)
    print("\n".join(found) or f"{len(pages(args.site))} pages: no problem at {WIDTH} px")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
