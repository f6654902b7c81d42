/*
** error.h: the API's error codes and the error record every layer fills.
**
** The codes come from one table, HPO_CODE_MAP, which gives the enum, the
** wire name and the HTTP status. Codes are append-only: the client library
** exposes their numbers.
*/
#ifndef HPO_CORE_ERROR_H
#define HPO_CORE_ERROR_H

#include <stdarg.h>

#define HPO_CODE_MAP(XX)                                                                      \
    XX(OK, "ok", 200)                                                                         \
    XX(INVALID_JSON, "invalid_json", 400)                                                     \
    XX(INVALID_ARGUMENT, "invalid_argument", 400)                                             \
    XX(UNAUTHENTICATED, "unauthenticated", 401)                                               \
    XX(PERMISSION_DENIED, "permission_denied", 403)                                           \
    XX(NOT_FOUND, "not_found", 404)                                                           \
    XX(METHOD_NOT_ALLOWED, "method_not_allowed", 405)                                         \
    XX(CONFLICT, "conflict", 409)                                                             \
    XX(EXHAUSTED, "exhausted", 409)                                                           \
    XX(PAYLOAD_TOO_LARGE, "payload_too_large", 413)                                           \
    XX(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415)                                 \
    XX(UNAVAILABLE, "unavailable", 503)                                                       \
    XX(INTERNAL, "internal", 500)

enum hpo_code {
#define HPO_CODE_ENUM(sym, name, status) HPO_##sym,
    HPO_CODE_MAP(HPO_CODE_ENUM)
#undef HPO_CODE_ENUM
        HPO_CODE_COUNT
};

/* A user-visible error. `field` is empty when no single field is at fault. */
struct hpo_error {
    enum hpo_code code;
    char field[192];
    char message[256];
};

/* The wire name ("invalid_argument") of a code; "internal" for unknown codes. */
const char *hpo_code_name(enum hpo_code code);

/* The HTTP status of a code; 500 for unknown codes. */
int hpo_code_status(enum hpo_code code);

/*
** Fill `err` (which may be NULL) with a code, an optional field (NULL for
** none) and a printf-style message. Returns the negative errno `r`, so that
** `return hpo_error_set(err, -EINVAL, ...)` reads as one step.
*/
int hpo_error_set(struct hpo_error *err, int r, enum hpo_code code, const char *field,
        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Clear an error record to HPO_OK with no field and no message. */
void hpo_error_clear(struct hpo_error *err);

#endif
