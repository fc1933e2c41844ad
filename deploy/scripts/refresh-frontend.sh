#!/bin/sh
# Refresh the vendored front-end assets of the pages (hub/pages/static/vendor) from the npm registry.
# Needs Node's npm once, here; neither `make demo` nor `make test` needs Node. Pin the versions below,
# run this, check the pages (tests/pages) and commit the result.
#
# GOV.UK Frontend: compiled CSS and JS and its licence. Its GDS Transport font and the crown are
# for services on GOV.UK only, so the @font-face rules are taken out of the CSS and the pages use
# Arial (the design system's own fallback); no font or crest file is copied.
# axe-core: the accessibility checker the browser tests inject into each page.
set -eu
GOVUK_FRONTEND=6.6.0
AXE_CORE=4.10.3

root=$(cd "$(dirname "$0")/../.." && pwd)
dest="$root/hub/pages/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "govuk-frontend@$GOVUK_FRONTEND" >/dev/null
npm pack --silent "axe-core@$AXE_CORE" >/dev/null
mkdir govuk axe
tar xzf "govuk-frontend-$GOVUK_FRONTEND.tgz" -C govuk
tar xzf "axe-core-$AXE_CORE.tgz" -C axe

mkdir -p "$dest/govuk-frontend" "$root/tests/pages/vendor"
# drop the restricted typeface; the rest of the stylesheet is as published
sed -e 's/@font-face{[^}]*}//g' govuk/package/dist/govuk/govuk-frontend.min.css \
    > "$dest/govuk-frontend/govuk-frontend.min.css"
cp govuk/package/dist/govuk/govuk-frontend.min.js "$dest/govuk-frontend/"
cat > "$dest/govuk-frontend/LICENCE.txt" <<LICENCE
GOV.UK Frontend $GOVUK_FRONTEND (https://github.com/alphagov/govuk-frontend), from the npm registry.

The MIT License (MIT)

Copyright (c) 2018 Crown Copyright (Government Digital Service)

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
LICENCE
echo "$GOVUK_FRONTEND" > "$dest/govuk-frontend/VERSION"
# axe-core is a test tool: it lives beside the browser tests, not in the wheel
cp axe/package/axe.min.js axe/package/LICENSE "$root/tests/pages/vendor/"
echo "$AXE_CORE" > "$root/tests/pages/vendor/AXE_VERSION"
echo "vendored govuk-frontend $GOVUK_FRONTEND into $dest, axe-core $AXE_CORE into tests/pages/vendor"
