/*
** error.c: names and statuses of the API error codes.
*/
#include <stdio.h>
#include <string.h>

#include "error.h"

static const char *const code_names[] = {
#define HPO_CODE_NAME(sym, name, status) name,
    HPO_CODE_MAP(HPO_CODE_NAME)
#undef HPO_CODE_NAME
};

static const int code_statuses[] = {
#define HPO_CODE_STATUS(sym, name, status) status,
    HPO_CODE_MAP(HPO_CODE_STATUS)
#undef HPO_CODE_STATUS
};

const char *hpo_code_name(enum hpo_code code)
{
    if ((unsigned)code >= HPO_CODE_COUNT) {
        return "internal";
    }
    return code_names[code];
}

int hpo_code_status(enum hpo_code code)
{
    if ((unsigned)code >= HPO_CODE_COUNT) {
        return 500;
    }
    return code_statuses[code];
}

int hpo_error_set(struct hpo_error *err, int r, enum hpo_code code, const char *field,
        const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return r;
    }
    err->code = code;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return r;
}

void hpo_error_clear(struct hpo_error *err)
{
    if (err == NULL) {
        return;
    }
    err->code = HPO_OK;
    err->field[0] = '\0';
    err->message[0] = '\0';
}
