#include "digest.h"

#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include <openssl/evp.h>
#include <xxh_x86dispatch.h>
#include <xxhash.h>

int mq_sha256_init(struct mq_sha256 *h)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		h->ctx = NULL;
		return -1;
	}
	h->ctx = c;
	return 0;
}

void mq_sha256_update(struct mq_sha256 *h, const void *p, size_t n)
{
	if (n)
		EVP_DigestUpdate(h->ctx, p, n);
}

void mq_sha256_final(struct mq_sha256 *h, uint8_t out[MQ_SHA256_LEN])
{
	unsigned len = MQ_SHA256_LEN;
	EVP_DigestFinal_ex(h->ctx, out, &len);
	mq_sha256_release(h);
}

void mq_sha256_release(struct mq_sha256 *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

int mq_sha256(const void *p, size_t n, uint8_t out[MQ_SHA256_LEN])
{
	struct mq_sha256 h;
	if (mq_sha256_init(&h))
		return -1;
	mq_sha256_update(&h, p, n);
	mq_sha256_final(&h, out);
	return 0;
}

void mq_hex(const uint8_t *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

size_t mq_digest_len(enum mq_digest_algo a)
{
	return a == MQ_DIGEST_SHA256 ? MQ_SHA256_LEN : sizeof(XXH128_canonical_t);
}

const char *mq_digest_name(enum mq_digest_algo a)
{
	return a == MQ_DIGEST_SHA256 ? "sha256" : "xxh3-128";
}

int mq_digest_parse(const char *s, enum mq_digest_algo *a)
{
	if (strcmp(s, "xxh3") == 0 || strcmp(s, "xxh3-128") == 0)
		*a = MQ_DIGEST_XXH3;
	else if (strcmp(s, "sha256") == 0)
		*a = MQ_DIGEST_SHA256;
	else
		return -1;
	return 0;
}

const char *mq_digest_key(enum mq_digest_algo a)
{
	return a == MQ_DIGEST_SHA256 ? "sha256" : "xxh3_128";
}

int mq_hasher_init(struct mq_hasher *h, enum mq_digest_algo a)
{
	h->algo = a;
	if (a == MQ_DIGEST_SHA256) {
		struct mq_sha256 s;
		int rc = mq_sha256_init(&s);
		h->ctx = s.ctx;
		return rc;
	}
	XXH3_state_t *x = XXH3_createState();
	if (!x || XXH3_128bits_reset(x) != XXH_OK) {
		XXH3_freeState(x);
		h->ctx = NULL;
		return -1;
	}
	h->ctx = x;
	return 0;
}

void mq_hasher_update(struct mq_hasher *h, const void *p, size_t n)
{
	if (h->algo == MQ_DIGEST_SHA256) {
		struct mq_sha256 s = { h->ctx };
		mq_sha256_update(&s, p, n);
	} else if (n) {
		XXH3_128bits_update_dispatch(h->ctx, p, n); /* the widest vector code the CPU runs */
	}
}

void mq_hasher_final(struct mq_hasher *h, uint8_t out[MQ_DIGEST_MAX])
{
	memset(out, 0, MQ_DIGEST_MAX);
	if (h->algo == MQ_DIGEST_SHA256) {
		struct mq_sha256 s = { h->ctx };
		mq_sha256_final(&s, out);
		h->ctx = NULL;
		return;
	}
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h->ctx));
	memcpy(out, c.digest, sizeof(c.digest));
	mq_hasher_release(h);
}

void mq_hasher_release(struct mq_hasher *h)
{
	if (h->algo == MQ_DIGEST_SHA256)
		EVP_MD_CTX_free(h->ctx);
	else
		XXH3_freeState(h->ctx);
	h->ctx = NULL;
}

int mq_digest(enum mq_digest_algo a, const void *p, size_t n, uint8_t out[MQ_DIGEST_MAX])
{
	struct mq_hasher h;
	if (mq_hasher_init(&h, a))
		return -1;
	mq_hasher_update(&h, p, n);
	mq_hasher_final(&h, out);
	return 0;
}

int mq_digest_slots(enum mq_digest_algo a, const uint8_t *slots, size_t n, uint8_t out[MQ_DIGEST_MAX])
{
	struct mq_hasher h;
	if (mq_hasher_init(&h, a))
		return -1;
	for (size_t i = 0; i < n; i++)
		mq_hasher_update(&h, slots + i * MQ_DIGEST_MAX, mq_digest_len(a));
	mq_hasher_final(&h, out);
	return 0;
}

int mq_digest_file(enum mq_digest_algo a, const char *path, char hex[2 * MQ_DIGEST_MAX + 1], struct mq_error *err)
{
	FILE *f = fopen(path, "rb");
	struct mq_hasher h;
	char *buf = malloc(MQ_DIGEST_FILE_BLOCK);
	if (!f || !buf || mq_hasher_init(&h, a)) {
		if (f)
			fclose(f);
		free(buf);
		return mq_fail(err, MQ_ERR_INPUT, "cannot read '%s' to checksum it", path);
	}
	size_t n;
	while ((n = fread(buf, 1, MQ_DIGEST_FILE_BLOCK, f)) > 0)
		mq_hasher_update(&h, buf, n);
	uint8_t d[MQ_DIGEST_MAX];
	mq_hasher_final(&h, d);
	mq_hex(d, mq_digest_len(a), hex);
	int bad = ferror(f);
	fclose(f);
	free(buf);
	return bad ? mq_fail(err, MQ_ERR_INPUT, "cannot read '%s'", path) : 0;
}
