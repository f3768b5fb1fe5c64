#!/usr/bin/env python3
"""Checks every link between the pages of the built book (docs/book): each relative link names
a page that exists, and each #fragment an id on that page; and that each relative link of
README.md names a file of the repository. Exits 1 listing the broken ones."""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def main(book: Path) -> int:
    pages = {}
    for path in book.rglob("*.html"):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = page
    if not pages:
        print(f"no pages under {book}: build the book first", file=sys.stderr)
        return 1
    broken = []
    for path, page in pages.items():
        # The print page repeats every chapter; the 404 page links relative to the site root.
        if path.name in ("print.html", "404.html"):
            continue
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if target.suffix != ".html":
                if not target.exists():
                    broken.append(f"{path.relative_to(book.resolve())}: {href} (no such file)")
                continue
            if target not in pages:
                broken.append(f"{path.relative_to(book.resolve())}: {href} (no such page)")
            elif parts.fragment and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{path.relative_to(book.resolve())}: {href} (no such anchor)")
    readme = Path("README.md")
    if readme.exists():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8")):
            if "://" not in target and not (readme.parent / target).exists():
                broken.append(f"README.md: {target} (no such file)")
    for line in broken:
        print(f"broken link: {line}", file=sys.stderr)
    print(f"book links: {sum(len(p.links) for p in pages.values())} read, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/book")))
