/* http_tls.h — TLS for the HTTP API ([http] tls_cert, tls_key), with
 * OpenSSL through libevent's bufferevent_openssl.
 *
 * Ownership: td_tls_ctx_new() returns an SSL_CTX the caller frees with
 * SSL_CTX_free(); connections made from it hold their own reference, so a
 * reload may free the old one while they go on. */
#ifndef TD_HTTP_TLS_H
#define TD_HTTP_TLS_H

#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include <stddef.h>

/* A server context: TLS 1.2 or newer, the certificate chain (PEM) and its
 * private key (PEM), checked to match. NULL with err naming the file. */
SSL_CTX *td_tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                        size_t errlen);

/* A bufferevent that accepts one TLS connection from ctx, for evhttp's
 * bevcb (the socket is set by evhttp). Aborts when out of memory, like
 * td_malloc: falling back to a plain connection would serve cleartext. */
struct bufferevent *td_tls_bev(struct event_base *base, SSL_CTX *ctx);

#endif
