/*
 * digest: the digests of source data, XXH3-128 (libxxhash, the default) or
 * SHA-256 (OpenSSL's libcrypto), behind one hasher; and SHA-256 alone for
 * the small texts that identify a run (fingerprint, journal identity).
 *
 * A tensor's digest is the digest, with the same algorithm, of its chunks'
 * digests concatenated (see plan.h for the chunk rule); a tensor of zero
 * bytes has no chunk, so its digest is that of the empty string. This lets
 * ranks hash the chunks they own and rank 0 combine them, independent of
 * rank count. Digests are held in slots of MQ_DIGEST_MAX bytes; an
 * algorithm's digest is the first mq_digest_len() of them (the rest zero).
 * XXH3-128 is stored in its canonical form (big-endian high then low half).
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

enum mq_digest_algo { MQ_DIGEST_XXH3, MQ_DIGEST_SHA256 }; /* the first, zero, is the default */

#define MQ_DIGEST_MAX MQ_SHA256_LEN

struct mq_hasher {
	enum mq_digest_algo algo;
	void *ctx; /* owned: an EVP_MD_CTX or an XXH3_state_t */
};

size_t mq_digest_len(enum mq_digest_algo a);      /* 16 or 32 */
/* "xxh3" (or "xxh3-128") or "sha256" into *a: 0, or -1 for any other name. */
int mq_digest_parse(const char *s, enum mq_digest_algo *a);
const char *mq_digest_name(enum mq_digest_algo a); /* "xxh3-128", "sha256": options and messages */
const char *mq_digest_key(enum mq_digest_algo a);  /* "xxh3_128", "sha256": metadata keys */
int mq_hasher_init(struct mq_hasher *h, enum mq_digest_algo a); /* 0, or -1 out of memory */
void mq_hasher_update(struct mq_hasher *h, const void *p, size_t n);
void mq_hasher_final(struct mq_hasher *h, uint8_t out[MQ_DIGEST_MAX]); /* zero-fills the slot; releases */
void mq_hasher_release(struct mq_hasher *h);
int mq_digest(enum mq_digest_algo a, const void *p, size_t n, uint8_t out[MQ_DIGEST_MAX]);
/* The digest of n slots' digests (each the algorithm's length of a MQ_DIGEST_MAX slot) concatenated. */
int mq_digest_slots(enum mq_digest_algo a, const uint8_t *slots, size_t n, uint8_t out[MQ_DIGEST_MAX]);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void mq_hex(const uint8_t *d, size_t n, char *out);

#define MQ_DIGEST_FILE_BLOCK (4u << 20) /* bytes read at a time */
/* The digest of a whole file (the calibration file), as hex. MQ_ERR_INPUT if it cannot be read. */
int mq_digest_file(enum mq_digest_algo a, const char *path, char hex[2 * MQ_DIGEST_MAX + 1], struct mq_error *err);

#endif
