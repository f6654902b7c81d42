/*
** tls.h: the server's certificate and key for HTTPS (GnuTLS through
** libmicrohttpd). MHD asks for credentials on every handshake through
** hpo_tls_retrieve(), which hands over the pair loaded last, so SIGHUP can
** swap certificate and key without restarting or dropping connections.
**
** Threading: load, reload and the handshakes all run on the loop thread.
*/
#ifndef HPO_TLS_H
#define HPO_TLS_H

#include <stddef.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

struct hpo_tls;

/* TLS 1.2 and 1.3 only, GnuTLS's NORMAL choice of ciphers otherwise. */
#define HPO_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/*
** Load a PEM certificate chain (leaf first) and its PEM private key; the
** key must belong to the leaf. Returns 0 and a new object, or a negative
** errno with a message naming the file in msg.
*/
int hpo_tls_create(const char *cert_path, const char *key_path, struct hpo_tls **ret_tls,
        char *msg, size_t msg_len);

/*
** Load the pair again (SIGHUP). On success new handshakes get the new pair;
** on failure nothing changes and msg says why. Pairs replaced stay alive
** until hpo_tls_destroy (sessions may still use them).
*/
int hpo_tls_reload(struct hpo_tls *tls, const char *cert_path, const char *key_path, char *msg,
        size_t msg_len);

/* The SHA-256 fingerprint of the current leaf certificate, hex (65 bytes), for logs. */
void hpo_tls_fingerprint(const struct hpo_tls *tls, char out[65]);

/* Free every pair. Accepts NULL. Call after the server stopped. */
void hpo_tls_destroy(struct hpo_tls *tls);

/*
** The gnutls_certificate_retrieve_function2 given to MHD
** (MHD_OPTION_HTTPS_CERT_CALLBACK): the current pair of the one hpo_tls
** created last. MHD's callback has no context pointer, hence one per process.
*/
int hpo_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
        const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
        unsigned int *pcert_length, gnutls_privkey_t *pkey);

#endif
