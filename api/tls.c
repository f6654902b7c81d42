/*
** tls.c: certificate and key pairs for HTTPS, swapped on SIGHUP (tls.h).
*/
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "../core/util.h"
#include "tls.h"

#define MAX_CHAIN 16 /* certificates in one chain */

struct pair {
    gnutls_pcert_st certs[MAX_CHAIN];
    unsigned n_certs;
    gnutls_privkey_t key;
    char fingerprint[65];
    struct pair *older; /* pairs replaced by this one, kept for sessions that use them */
};

struct hpo_tls {
    /* Swapped by SIGHUP on the loop thread, read by handshakes on MHD's threads. */
    struct pair *_Atomic current;
};

/* The object MHD's context-free callback serves from (the last one created). */
static struct hpo_tls *serving;

static void pair_free(struct pair *p)
{
    while (p != NULL) {
        struct pair *older = p->older;
        for (unsigned i = 0; i < p->n_certs; i++) {
            gnutls_pcert_deinit(&p->certs[i]);
        }
        gnutls_privkey_deinit(p->key);
        free(p);
        p = older;
    }
}

/* Whether the private key is the leaf certificate's (same public key id). */
static bool key_matches(struct pair *p)
{
    gnutls_pubkey_t pub;
    unsigned char a[64], b[64];
    size_t na = sizeof(a), nb = sizeof(b);
    bool ok = false;

    if (gnutls_pubkey_init(&pub) < 0) {
        return false;
    }
    if (gnutls_pubkey_import_privkey(pub, p->key, 0, 0) == 0 &&
            gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &na) == 0 &&
            gnutls_pubkey_get_key_id(p->certs[0].pubkey, GNUTLS_KEYID_USE_SHA256, b, &nb) == 0) {
        ok = na == nb && memcmp(a, b, na) == 0;
    }
    gnutls_pubkey_deinit(pub);
    return ok;
}

static int pair_load(const char *cert_path, const char *key_path, struct pair **ret, char *msg,
        size_t len)
{
    struct pair *p = calloc(1, sizeof(*p));
    gnutls_datum_t data = { NULL, 0 };
    unsigned char fp[32];
    size_t fp_len = sizeof(fp);
    int g;

    if (p == NULL) {
        return hpo_fail(msg, len, -ENOMEM, "out of memory");
    }
    g = gnutls_load_file(cert_path, &data);
    if (g < 0) {
        free(p);
        return hpo_fail(msg, len, -ENOENT, "tls-cert '%s': cannot read it (%s)", cert_path,
                gnutls_strerror(g));
    }
    p->n_certs = MAX_CHAIN;
    g = gnutls_pcert_list_import_x509_raw(p->certs, &p->n_certs, &data, GNUTLS_X509_FMT_PEM,
            GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
    if (g < 0) {
        p->n_certs = 0;
    }
    if (g >= 0 && p->n_certs > 0) {
        g = gnutls_fingerprint(GNUTLS_DIG_SHA256, &p->certs[0].cert, fp, &fp_len);
    }
    gnutls_free(data.data);
    if (g < 0 || p->n_certs == 0) {
        pair_free(p);
        return hpo_fail(msg, len, -EINVAL, "tls-cert '%s': no usable PEM certificate chain (%s)",
                cert_path, g < 0 ? gnutls_strerror(g) : "empty");
    }
    for (size_t i = 0; i < fp_len && i < 32; i++) {
        snprintf(p->fingerprint + 2 * i, 3, "%02x", fp[i]);
    }
    g = gnutls_load_file(key_path, &data);
    if (g < 0) {
        pair_free(p);
        return hpo_fail(msg, len, -ENOENT, "tls-key '%s': cannot read it (%s)", key_path,
                gnutls_strerror(g));
    }
    g = gnutls_privkey_init(&p->key);
    if (g >= 0) {
        g = gnutls_privkey_import_x509_raw(p->key, &data, GNUTLS_X509_FMT_PEM, NULL, 0);
    }
    gnutls_memset(data.data, 0, data.size);
    gnutls_free(data.data);
    if (g < 0) {
        pair_free(p);
        return hpo_fail(msg, len, -EINVAL, "tls-key '%s': no usable PEM private key (%s)", key_path,
                gnutls_strerror(g));
    }
    if (!key_matches(p)) {
        pair_free(p);
        return hpo_fail(msg, len, -EINVAL,
                "tls-key '%s' does not belong to the certificate of '%s'",
                key_path, cert_path);
    }
    *ret = p;
    return 0;
}

int hpo_tls_create(const char *cert_path, const char *key_path, struct hpo_tls **ret_tls,
        char *msg, size_t msg_len)
{
    struct hpo_tls *tls = calloc(1, sizeof(*tls));
    struct pair *p = NULL;
    int r;

    if (tls == NULL) {
        return hpo_fail(msg, msg_len, -ENOMEM, "out of memory");
    }
    r = pair_load(cert_path, key_path, &p, msg, msg_len);
    if (r < 0) {
        free(tls);
        return r;
    }
    atomic_store(&tls->current, p);
    serving = tls;
    *ret_tls = tls;
    return 0;
}

int hpo_tls_reload(struct hpo_tls *tls, const char *cert_path, const char *key_path, char *msg,
        size_t msg_len)
{
    struct pair *p = NULL;
    int r = pair_load(cert_path, key_path, &p, msg, msg_len);

    if (r < 0) {
        return r;
    }
    p->older = atomic_load(&tls->current);
    atomic_store(&tls->current, p);
    return 0;
}

void hpo_tls_fingerprint(const struct hpo_tls *tls, char out[65])
{
    snprintf(out, 65, "%s", tls->current->fingerprint);
}

void hpo_tls_destroy(struct hpo_tls *tls)
{
    if (tls == NULL) {
        return;
    }
    if (serving == tls) {
        serving = NULL;
    }
    pair_free(tls->current);
    free(tls);
}

int hpo_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
        const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
        unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    struct hpo_tls *tls = serving;
    struct pair *p = tls != NULL ? atomic_load(&tls->current) : NULL;

    if (p == NULL) {
        return -1;
    }
    *pcert = p->certs;
    *pcert_length = p->n_certs;
    *pkey = p->key;
    return 0;
}
