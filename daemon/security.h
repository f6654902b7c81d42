/*
** security.h: the daemon's side of access and TLS (docs/API.md "Access and
** TLS"): `--new-token`, loading the tokens file at start, the refusal to
** listen unauthenticated beyond loopback, and re-reading on SIGHUP.
*/
#ifndef HPO_SECURITY_H
#define HPO_SECURITY_H

#include "config.h"

struct hpo_api;
struct hpo_tokens;
struct hpo_tls;

/* What the daemon holds for access: the live token set (NULL = no tokens). */
struct hpo_security {
    struct hpo_tokens *tokens;
    struct hpo_tls *tls; /* NULL: plain HTTP */
};

/*
** If argv asks for --new-token NAME:ROLE[:PREFIX], print the secret and the
** tokens-file line on stdout and return the exit status (0, or 2 with a
** message on stderr); otherwise return -1.
*/
int hpo_security_new_token(int argc, char **argv);

/*
** At start, before listening: load the tokens file and the TLS pair if
** any (tls-cert and tls-key go together); refuse a
** non-loopback address without tokens unless allow-unauthenticated.
** Returns 0, or a negative errno with msg filled (the daemon exits 2).
*/
int hpo_security_start(struct hpo_security *sec, const struct hpo_config *cfg, char *msg,
        size_t msg_len);

/*
** SIGHUP: re-read the tokens file (a bad file keeps the running set, and
** the reason is logged) and hand the new set to `api`; load the TLS pair
** again (a pair that does not load keeps the running one, logged).
*/
void hpo_security_reload(struct hpo_security *sec, const struct hpo_config *cfg,
        struct hpo_api *api);

/* Free what start loaded. */
void hpo_security_finish(struct hpo_security *sec);

#endif
