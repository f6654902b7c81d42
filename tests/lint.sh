#!/bin/sh
# Static checks docs/STYLE.md asks CI to enforce: banned calls (rule 11) and
# module boundaries (rule 2). Exits non-zero and names each violation.
set -u
root="$1"
cd "$root" || exit 2
bad=0
banned='\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|atof|localtime|gmtime|strerror|rand|srand|setlocale)[[:space:]]*\('
files=$(ls core/*.c core/*.h samplers/*.c samplers/*.h pruners/*.c pruners/*.h storage/*.c storage/*.h \
        service/*.c service/*.h api/*.c api/*.h daemon/*.c daemon/*.h \
        client/lib/*.c client/lib/*.h client/hpoctl/*.c client/hpoctl/*.h client/include/hpo/*.h 2>/dev/null)
if grep -nE "$banned" $files | grep -vE '(snprintf|vsnprintf|_r[[:space:]]*\(|strerror_r)'; then
    echo "lint: banned function used (docs/STYLE.md rule 11)"
    bad=1
fi
check() { # folder header
    if grep -ln "#include <$2" $(ls $1/*.c $1/*.h 2>/dev/null) 2>/dev/null; then
        echo "lint: $1 must not include <$2> (docs/STYLE.md rule 2)"
        bad=1
    fi
}
for d in core samplers pruners service api daemon; do check $d sqlite3.h; done
for d in core samplers pruners storage service daemon; do check $d microhttpd.h; done
for d in core samplers pruners storage service api; do check $d uv.h; done
# The module graph (docs/STYLE.md rule 2): each module includes headers only
# from the modules on its line (besides its own). core <- samplers, pruners
# <- storage <- service <- api <- daemon; the client stands apart (core's
# error codes only, for a compile-time check).
while read -r mod allowed; do
    for f in $(find "$mod" -name '*.c' -o -name '*.h' -o -name '*.def' 2>/dev/null); do
        for dep in $(grep -ohE '#include "(\.\./)+[a-z]+/' "$f" | sed -E 's|#include "(\.\./)+||; s|/$||' | sort -u); do
            case " $mod $allowed " in
            *" $dep "*) ;;
            *) echo "lint: $f includes $dep/, which $mod/ may not (docs/STYLE.md rule 2)"; bad=1 ;;
            esac
        done
    done
done <<EOF
core
samplers core
pruners core
storage core
service core samplers pruners storage
api core samplers pruners storage service
daemon core samplers pruners storage service api
client core
EOF
# Documents cited from code are in docs/, cited by path, and so are the
# sections cited: "§N.M" of docs/ALGORITHMS.md, "rule N" of docs/STYLE.md,
# a quoted heading of any of them (docs/STYLE.md rule 48).
src=$(find core samplers pruners storage service api daemon client tests bench examples -type f \
        \( -name '*.c' -o -name '*.h' -o -name '*.py' -o -name '*.sh' -o -name 'meson.build' \
        -o -name '*.dict' \) 2>/dev/null)
names='ALGORITHMS|DESIGN|STYLE|API|REFERENCE'
if grep -nE "(^|[^/A-Za-z_])($names)\.md" $src; then
    echo "lint: cite a document by its path in docs/ (docs/STYLE.md rule 48)"
    bad=1
fi
for doc in $(grep -ohE 'docs/[A-Za-z0-9_/.-]+\.md' $src | sort -u); do
    if [ ! -f "$doc" ]; then
        echo "lint: $doc is cited but not in the repository"
        bad=1
    fi
done
for sec in $(grep -ohE 'docs/ALGORITHMS\.md §[0-9]+(\.[0-9]+)?' $src | sed 's/.*§//' | sort -u); do
    if ! grep -qE "^#+ $(echo "$sec" | sed 's/\./\\./g')[. ]" docs/ALGORITHMS.md; then
        echo "lint: docs/ALGORITHMS.md has no section $sec"
        bad=1
    fi
done
for rule in $(grep -ohE 'docs/STYLE\.md rules? [0-9]+' $src | sed 's/.* //' | sort -u); do
    if ! grep -qE "^$rule\. " docs/STYLE.md; then
        echo "lint: docs/STYLE.md has no rule $rule"
        bad=1
    fi
done
while IFS= read -r cite; do
    [ -n "$cite" ] || continue
    doc=${cite%% *}
    head=${cite#*\"}
    head=${head%\"}
    if [ -f "$doc" ] && ! grep -E '^#+ ' "$doc" | sed -E 's/^#+ //' | grep -qxF "$head"; then
        echo "lint: $doc has no section \"$head\""
        bad=1
    fi
done <<EOF
$(grep -ohE 'docs/[A-Za-z0-9_/.-]+\.md "[^"]+"' $src | sort -u)
EOF
[ $bad -eq 0 ] && echo "lint: ok"
exit $bad
