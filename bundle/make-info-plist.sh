#!/bin/sh
# Writes Info.plist from the template and the reader list.
# usage: make-info-plist.sh TEMPLATE READERS VERSION > Info.plist
set -eu
template=$1 readers=$2 version=$3
esc() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
vids=$(grep -v '^#' "$readers" | grep -v '^$' | cut -d: -f1 | sed 's/.*/\t\t<string>&<\/string>/') || true
pids=$(grep -v '^#' "$readers" | grep -v '^$' | cut -d: -f2 | sed 's/.*/\t\t<string>&<\/string>/') || true
names=$(grep -v '^#' "$readers" | grep -v '^$' | cut -d: -f3- | esc | sed 's/.*/\t\t<string>&<\/string>/') || true
awk -v version="$version" -v vids="$vids" -v pids="$pids" -v names="$names" '
  /@VENDOR_IDS@/ { if (vids != "") print vids; next }
  /@PRODUCT_IDS@/ { if (pids != "") print pids; next }
  /@NAMES@/ { if (names != "") print names; next }
  { gsub(/@VERSION@/, version); print }
' "$template"
