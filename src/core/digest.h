/*
 * digest: SHA-256 (OpenSSL's implementation) and the tree digest of tensor data.
 *
 * A tensor's digest is SHA-256 over the concatenated SHA-256 digests of its
 * chunks (see plan.h for the chunk rule); a tensor of zero bytes has no
 * chunk, so its digest is SHA-256 of the empty string. This lets ranks hash
 * the chunks they own and rank 0 combine them, independent of rank count.
 */
#ifndef MQ_DIGEST_H
#define MQ_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define MQ_SHA256_LEN 32

struct mq_sha256 {
	void *ctx; /* EVP_MD_CTX, owned */
};

int mq_sha256_init(struct mq_sha256 *h);   /* 0, or -1 out of memory */
void mq_sha256_update(struct mq_sha256 *h, const void *p, size_t n);
void mq_sha256_final(struct mq_sha256 *h, uint8_t out[MQ_SHA256_LEN]); /* also releases */
void mq_sha256_release(struct mq_sha256 *h);
int mq_sha256(const void *p, size_t n, uint8_t out[MQ_SHA256_LEN]);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void mq_hex(const uint8_t *d, size_t n, char *out);

#define MQ_SHA256_FILE_BLOCK (4u << 20) /* bytes read at a time */
/* SHA-256 of a whole file (the calibration file), as hex. MQ_ERR_INPUT if it cannot be read. */
int mq_sha256_file(const char *path, char hex[2 * MQ_SHA256_LEN + 1], struct mq_error *err);

#endif
