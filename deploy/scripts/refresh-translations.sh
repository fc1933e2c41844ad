#!/bin/sh
# Refresh the pages' Welsh catalogue after changing a template's words: extract the messages, merge them
# into hub/pages/locales/cy/LC_MESSAGES/messages.po (translate the new or fuzzy ones there), compile the .mo.
# Both the .po and the compiled .mo are committed, so `make test` and `make demo` need no extra step;
# tests/pages/test_pages_welsh.py fails while a message is untranslated or the .mo is stale.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
py=${PYTHON:-.venv/bin/python}
"$py" -m babel.messages.frontend extract -F hub/pages/babel.cfg -o hub/pages/locales/messages.pot \
    --no-location --sort-output --project family-hub .
"$py" -m babel.messages.frontend update -i hub/pages/locales/messages.pot -d hub/pages/locales -D messages \
    --no-fuzzy-matching --ignore-obsolete -w 120
"$py" -m babel.messages.frontend compile -d hub/pages/locales -D messages --statistics
