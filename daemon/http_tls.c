/* http_tls.c — TLS for the HTTP API (see http_tls.h).
 *
 * The design is simple: one SSL_CTX made from [http] tls_cert and tls_key;
 * evhttp's bevcb wraps every accepted socket in a bufferevent_openssl in
 * accepting state, so routing, limits and handlers see plain HTTP and
 * nothing else changes. TLS 1.2 is the floor (older versions are refused in
 * the handshake); cipher choice is OpenSSL's default for those versions.
 * SIGHUP builds a new context from the files and swaps it in (http.c), so
 * a renewed certificate applies to new connections without a restart. A
 * client that closes without close_notify is not an error: HTTP framing
 * says where bodies end. Never blocks: the handshake runs on the loop. */
#include "internal/http_tls.h"

#include <event2/bufferevent_ssl.h>
#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
ssl_error(char *err, size_t errlen, const char *what, const char *file)
{
    char e[256] = "";
    unsigned long code = ERR_peek_last_error();
    if (code)
        ERR_error_string_n(code, e, sizeof(e));
    ERR_clear_error();
    snprintf(err, errlen, "http: %s %s: %s", what, file, e[0] ? e : "unknown error");
}

SSL_CTX *
td_tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    /* OpenSSL says "system lib" for a file it cannot open: say why. */
    const char *files[2] = {cert_file, key_file};
    for (int i = 0; i < 2; i++)
        if (access(files[i], R_OK) != 0) {
            snprintf(err, errlen, "http: cannot read %s: %s", files[i], strerror(errno));
            return NULL;
        }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error(err, errlen, "cannot create a TLS context for", cert_file);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No renegotiation by clients (a CPU cost they could impose at will),
     * no session tickets keyed in this process only. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_error(err, errlen, "cannot load the certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        /* A key of another certificate fails here (x509 "key values
         * mismatch") rather than in the check below. */
        ssl_error(err, errlen, "cannot use the private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, errlen, "the private key does not match the certificate in",
                  cert_file);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct bufferevent *
td_tls_bev(struct event_base *base, SSL_CTX *ctx)
{
    SSL *ssl = SSL_new(ctx);
    struct bufferevent *bev =
        ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE)
            : NULL;
    if (!bev) {
        fprintf(stderr, "triaged: out of memory for a TLS connection\n");
        abort();
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}
