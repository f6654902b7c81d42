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
[ $bad -eq 0 ] && echo "lint: ok"
exit $bad
