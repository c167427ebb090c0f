#!/bin/sh
# Merges the CSV records of annotate shards (and of their retries) into one CSV on stdout:
#
#   scripts/merge-records.sh records/*.csv > faces.csv
#
# - one header (the first file's; every other header line is dropped);
# - a last line without its newline (the record being written when a run was killed) is dropped,
#   with a warning on stderr; the retry writes that photo again;
# - a face recorded twice (a photo done by a killed run and again by its retry) is kept once: the
#   last file given that has it wins, so give the files oldest first;
# - rows come out sorted by file (byte order) and face number: the order of one run over a folder.
#
# Exit codes: 0 ok, 1 a file is unreadable or not annotate's CSV, 2 usage.
# File names with tabs or newlines are not supported (quoted commas are).
set -eu
if [ "$#" -eq 0 ]; then
    echo "usage: $0 RECORDS.csv... > merged.csv (annotate --format csv outputs of the shards)" >&2
    exit 2
fi
header=""
for f in "$@"; do
    if [ ! -r "$f" ] || [ -d "$f" ]; then echo "error: $f: cannot read it" >&2; exit 1; fi
    [ -s "$f" ] || continue
    first=$(head -n 1 "$f")
    case "$first" in
        file,faces,face,*) ;;
        *) echo "error: $f: not annotate's CSV records (first line: $first)" >&2; exit 1 ;;
    esac
    if [ -z "$header" ]; then header=$first
    elif [ "$first" != "$header" ]; then echo "error: $f: its header differs from the first file's" >&2; exit 1
    fi
done
if [ -z "$header" ]; then echo "error: no records in $*" >&2; exit 1; fi
printf '%s\n' "$header"
tab=$(printf '\t')
for f in "$@"; do
    [ -s "$f" ] || continue
    if [ -n "$(tail -c 1 "$f")" ]; then echo "warning: $f: dropping its last, unfinished line" >&2; fi
    head -n "$(wc -l < "$f")" "$f"   # complete lines only
done | awk -v header="$header" '
    $0 == header { next }
    {
        # the file field: quoted ("a,b.png", quotes doubled) or plain; then faces, face
        if (substr($0, 1, 1) == "\"") { match($0, /^"([^"]|"")*"/); file = substr($0, 1, RLENGTH); rest = substr($0, RLENGTH + 2) }
        else { i = index($0, ","); file = substr($0, 1, i - 1); rest = substr($0, i + 1) }
        split(rest, f, ",")
        key = file SUBSEP f[2]
        if (!(key in row)) order[++n] = key
        sortname = file
        if (substr(file, 1, 1) == "\"") { sortname = substr(file, 2, length(file) - 2); gsub(/""/, "\"", sortname) }
        row[key] = $0; name[key] = sortname; face[key] = f[2]
    }
    END { for (i = 1; i <= n; i++) { k = order[i]; print name[k] "\t" face[k] "\t" row[k] } }
' | LC_ALL=C sort -t "$tab" -k1,1 -k2,2n | cut -f 3-
