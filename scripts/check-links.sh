#!/usr/bin/env bash
# Checks that every relative link in the repository's Markdown files points at
# a file or directory that exists (external links are not fetched).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r md; do
  dir=$(dirname "$md")
  while IFS= read -r target; do
    path="${target%%#*}"
    [ -z "$path" ] && continue
    case "$path" in http://*|https://*|mailto:*|file://*) continue ;; esac
    if [ ! -e "$dir/$path" ]; then
      echo "broken link in $md: $target"
      bad=1
    fi
  done < <(grep -o '\](\([^)]*\))' "$md" | sed -e 's/^](//' -e 's/)$//')
done < <(git ls-files '*.md')
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "links OK"
