/*
** tokens.h: API tokens (docs/API.md "Access and TLS"): the tokens file
** (`NAME ROLE SHA256HEX [PREFIX]` per line, `#` comments), roles
** read < write < admin, study-name prefix scopes, lookup of a presented
** secret by its SHA-256 digest in constant time, and minting new tokens.
**
** Pure: no MHD, no logging; errors come back as messages naming the line.
** Only digests are ever held: the secret of a token lives with its holder.
*/
#ifndef HPO_TOKENS_H
#define HPO_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hpo_role {
    HPO_ROLE_NONE = 0,  /* no token: nothing but /healthz */
    HPO_ROLE_READ = 1,  /* GET */
    HPO_ROLE_WRITE = 2, /* also create, ask, tell, report, heartbeat, record, upload */
    HPO_ROLE_ADMIN = 3, /* also delete studies and /v1/admin/ */
};

#define HPO_TOKEN_NAME_MAX 64    /* characters of a token's name */
#define HPO_TOKEN_PREFIX_MAX 128 /* characters of a scope prefix (a study name's maximum) */
#define HPO_TOKEN_SECRET_MAX 256 /* longest presented secret looked at */
#define HPO_TOKEN_LINE_MAX 512   /* longest line of a tokens file */

struct hpo_token {
    char name[HPO_TOKEN_NAME_MAX + 1];
    enum hpo_role role;
    uint8_t digest[32];                    /* SHA-256 of the secret */
    char prefix[HPO_TOKEN_PREFIX_MAX + 1]; /* "" = every study */
};

struct hpo_tokens {
    size_t n;
    struct hpo_token *v; /* in file order */
};

/*
** Parse a tokens file's text (`len` bytes, need not be NUL-terminated).
** Returns 0 and a new set in *ret_tokens, or -EINVAL (or -ENOMEM) with a
** message such as "line 3: role 'root' must be read, write or admin" in msg.
*/
int hpo_tokens_parse(const char *text, size_t len, struct hpo_tokens **ret_tokens, char *msg,
        size_t msg_len);

/* Read and parse a tokens file; messages name the file. Returns 0 or a negative errno. */
int hpo_tokens_load(const char *path, struct hpo_tokens **ret_tokens, char *msg, size_t msg_len);

/* Free a set. Accepts NULL. */
void hpo_tokens_free(struct hpo_tokens *tokens);

/*
** The token whose digest is SHA-256(secret[0..len)), or NULL. Every entry
** is compared, each in constant time, so the time taken says nothing about
** which or how many digest bytes matched. The pointer is into `tokens`.
*/
const struct hpo_token *hpo_tokens_lookup(const struct hpo_tokens *tokens, const char *secret,
        size_t len);

/*
** The secret of an `Authorization` header value: what follows "Bearer "
** (scheme case-insensitive, spaces skipped), with its length; NULL when the
** header is not a bearer credential.
*/
const char *hpo_tokens_bearer(const char *header, size_t *ret_len);

/* Whether a token with scope `prefix` ("" = all) may see the study named `study`. */
bool hpo_tokens_sees(const char *prefix, const char *study);

/* "read", "write", "admin" -> role; HPO_ROLE_NONE when unknown. */
enum hpo_role hpo_role_parse(const char *name);

/* The role's name ("none" for HPO_ROLE_NONE). */
const char *hpo_role_name(enum hpo_role role);

/*
** Mint a token for `spec` = NAME:ROLE[:PREFIX]: 32 bytes from getrandom(),
** base64url without padding, after "hpod_" (48 characters) into `secret`
** (at least 49 bytes), and its tokens-file line (no newline) into `line`
** (at least HPO_TOKEN_LINE_MAX bytes). Returns 0, or -EINVAL with msg
** filled for a bad spec, or a negative errno when no randomness was had.
*/
int hpo_tokens_mint(const char *spec, char *secret, size_t secret_len, char *line,
        size_t line_len, char *msg, size_t msg_len);

#endif
