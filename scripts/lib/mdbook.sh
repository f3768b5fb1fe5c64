# Sourced by scripts/test.sh: mdbook (the book under docs/), built from crates.io into .tools/
# when absent (about a minute), and a check of the links between its pages.

MDBOOK_VERSION=0.5.4

ensure_mdbook() {
  if ! .tools/bin/mdbook --version 2>/dev/null | grep -q "v$MDBOOK_VERSION"; then
    echo "installing mdbook $MDBOOK_VERSION into .tools/"
    cargo install mdbook --locked --version "$MDBOOK_VERSION" --no-default-features \
      --features search --root .tools
  fi
}

build_book() {
  ensure_mdbook
  rm -rf docs/book
  .tools/bin/mdbook build docs
  python3 scripts/check_book_links.py docs/book
}
