#!/usr/bin/env bash
# Build the documentation site (mkdocs.yml: MkDocs + Material + mkdocstrings)
# with --strict, so that any warning fails: a broken link or anchor, a page
# left out of the nav, a docstring griffe cannot parse, a parameter documented
# that the signature does not have. Installs the docs extra into $VENV (see
# scripts/setup_env.sh); no backend is needed (the API reference is read from
# the source, not imported).
#   bash scripts/docs.sh          build into site/
#   bash scripts/docs.sh serve    live preview on http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh "docs"
export NO_MKDOCS_2_WARNING=1   # Material's banner about MkDocs 2; not a build warning
if [ "${1:-build}" = "serve" ]; then
  exec "$VENV/bin/mkdocs" serve
fi
"$VENV/bin/mkdocs" build --strict --site-dir site
echo "docs built: site/index.html"
