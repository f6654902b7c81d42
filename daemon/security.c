/*
** security.c: --new-token, tokens at start and on SIGHUP (security.h).
*/
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "../api/access.h"
#include "../api/api.h"
#include "../core/log.h"
#include "../api/tokens.h"
#include "../api/tls.h"
#include "security.h"

int hpo_security_new_token(int argc, char **argv)
{
    const char *spec = NULL;
    char secret[64], line[HPO_TOKEN_LINE_MAX], msg[256];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--new-token") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "hpod: --new-token needs NAME:ROLE[:PREFIX]\n");
                return 2;
            }
            spec = argv[i + 1];
            break;
        }
        if (strncmp(argv[i], "--new-token=", 12) == 0) {
            spec = argv[i] + 12;
            break;
        }
    }
    if (spec == NULL) {
        return -1;
    }
    if (hpo_tokens_mint(spec, secret, sizeof(secret), line, sizeof(line), msg, sizeof(msg)) < 0) {
        fprintf(stderr, "hpod: --new-token: %s\n", msg);
        return 2;
    }
    printf("%s\n%s\n", secret, line);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Enough descriptors for max-connections and the reserve, the database and logs. */
static void raise_nofile(unsigned connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)connections + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want) {
        hpo_log(HPO_LOG_WARNING, "max-connections %u needs %llu open files; the limit is %llu",
                connections, (unsigned long long)want, (unsigned long long)rl.rlim_cur);
    }
}

int hpo_security_start(struct hpo_security *sec, const struct hpo_config *cfg, char *msg,
        size_t msg_len)
{
    const struct hpo_access_config *a = &cfg->access;
    int r;

    memset(sec, 0, sizeof(*sec));
    raise_nofile(a->max_connections);
    if ((a->tls_cert[0] != '\0') != (a->tls_key[0] != '\0')) {
        snprintf(msg, msg_len, "tls-cert and tls-key go together: give both or neither");
        return -EINVAL;
    }
    if (a->tls_cert[0] != '\0') {
        char fp[65];
        r = hpo_tls_create(a->tls_cert, a->tls_key, &sec->tls, msg, msg_len);
        if (r < 0) {
            return r;
        }
        hpo_tls_fingerprint(sec->tls, fp);
        hpo_log(HPO_LOG_NOTICE, "TLS certificate '%s' (SHA-256 %s)", a->tls_cert, fp);
        {
            struct stat st;
            if (stat(a->tls_key, &st) == 0 && (st.st_mode & 077) != 0) {
                hpo_log(HPO_LOG_WARNING, "tls-key '%s' is readable by others (mode %03o); "
                        "make it readable by the service alone (chmod 600)", a->tls_key,
                        (unsigned)(st.st_mode & 0777));
            }
        }
    }
    if (a->tokens[0] != '\0') {
        r = hpo_tokens_load(a->tokens, &sec->tokens, msg, msg_len);
        if (r < 0) {
            hpo_security_finish(sec);
            return r;
        }
        if (sec->tokens->n == 0) {
            hpo_log(HPO_LOG_WARNING, "tokens file '%s' holds no token: every /v1 request "
                    "will be refused", a->tokens);
        }
        return 0;
    }
    if (!hpo_access_is_loopback(cfg->host) && !a->allow_unauthenticated) {
        hpo_security_finish(sec);
        snprintf(msg, msg_len,
                "refusing to listen on %s without tokens: anyone who reaches it could read, "
                "change and delete every study; give --tokens FILE (see --new-token), or "
                "--allow-unauthenticated if the network is trusted",
                cfg->host);
        return -EPERM;
    }
    if (!hpo_access_is_loopback(cfg->host)) {
        hpo_log(HPO_LOG_WARNING, "listening on %s without tokens (--allow-unauthenticated)",
                cfg->host);
    }
    return 0;
}

void hpo_security_reload(struct hpo_security *sec, const struct hpo_config *cfg,
        struct hpo_api *api)
{
    struct hpo_tokens *fresh = NULL;
    char msg[512];

    if (sec->tls != NULL) {
        const struct hpo_access_config *a = &cfg->access;
        char fp[65];
        if (hpo_tls_reload(sec->tls, a->tls_cert, a->tls_key, msg, sizeof(msg)) < 0) {
            hpo_tls_fingerprint(sec->tls, fp);
            hpo_log(HPO_LOG_WARNING, "SIGHUP: %s; keeping the certificate in use (SHA-256 %s)",
                    msg, fp);
        } else {
            hpo_tls_fingerprint(sec->tls, fp);
            hpo_log(HPO_LOG_NOTICE, "SIGHUP: TLS certificate '%s' reloaded (SHA-256 %s)",
                    a->tls_cert, fp);
        }
    }
    if (cfg->access.tokens[0] == '\0') {
        return;
    }
    if (hpo_tokens_load(cfg->access.tokens, &fresh, msg, sizeof(msg)) < 0) {
        hpo_log(HPO_LOG_WARNING, "SIGHUP: %s; keeping the %zu token(s) in use", msg,
                sec->tokens->n);
        return;
    }
    hpo_api_set_tokens(api, fresh);
    hpo_tokens_free(sec->tokens);
    sec->tokens = fresh;
    hpo_log(HPO_LOG_NOTICE, "SIGHUP: tokens file '%s' reloaded (%zu token(s))",
            cfg->access.tokens, fresh->n);
}

void hpo_security_finish(struct hpo_security *sec)
{
    hpo_tokens_free(sec->tokens);
    sec->tokens = NULL;
    hpo_tls_destroy(sec->tls);
    sec->tls = NULL;
}
