"""Take the README's demo screenshot: serve the demo on a query/gallery set and photograph the page as it opens.

    python benchmarks/demo_screenshot.py --dataset ../shared/data/cuhk03-detected-mini \
        --weights runs/real_tables/softmax/seed-1 --weights runs/real_tables/softmax_ccsc/seed-1 \
        --example-query 0 --output docs/demo.png

The page opens with the example query answered (no click); headless Debian chromium (``/usr/bin/chromium``),
driven by Playwright, waits until every result and map image has loaded, then writes a full-page PNG.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from ccsc_plugin.serve.demo_backend import DemoBackend
from ccsc_plugin.shipped import demo_app

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TIMEOUT_MS = 300_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot(backend: DemoBackend, output: Path, rows: int) -> Path:
    """Serve ``backend`` on localhost, open the page and save it once ``rows`` rows of 5 results have loaded."""
    from playwright.sync_api import sync_playwright

    app = demo_app().launch(backend, port=free_port(), block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app.local_url)
            for row in range(rows):
                page.wait_for_function(
                    """(selector) => {
                        const images = [...document.querySelectorAll(selector)];
                        return images.length >= 5 && images.every((image) => image.complete && image.naturalWidth > 0);
                    }""",
                    arg=f"#maps-{row} img",
                )
            page.screenshot(path=str(output), full_page=True)
            browser.close()
    finally:
        app.close()
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", required=True, help="checkpoint or run folder (repeatable)")
    parser.add_argument("--dataset", required=True, help="query/gallery set, e.g. a folder holding labels.csv")
    parser.add_argument("--example-query", type=int, default=0, help="the query answered as the page opens")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "demo.png")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"demo_screenshot.py: error: {CHROMIUM} is absent: sudo apt-get install -y chromium", file=sys.stderr)
        return 2
    backend = DemoBackend(args.weights, dataset=args.dataset, example_query=args.example_query)
    for error in backend.errors:
        print(f"demo_screenshot.py: error: {error}", file=sys.stderr)
    if backend.errors:
        return 2
    print(f"Wrote {screenshot(backend, args.output, len(args.weights))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
