#include "digest.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

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

int mq_sha256_file(const char *path, char hex[2 * MQ_SHA256_LEN + 1], struct mq_error *err)
{
	FILE *f = fopen(path, "rb");
	struct mq_sha256 h;
	char *buf = malloc(MQ_SHA256_FILE_BLOCK);
	if (!f || !buf || mq_sha256_init(&h)) {
		if (f)
			fclose(f);
		free(buf);
		return mq_fail(err, MQ_ERR_INPUT, "cannot read '%s' to checksum it", path);
	}
	size_t n;
	while ((n = fread(buf, 1, MQ_SHA256_FILE_BLOCK, f)) > 0)
		mq_sha256_update(&h, buf, n);
	uint8_t d[MQ_SHA256_LEN];
	mq_sha256_final(&h, d);
	mq_hex(d, MQ_SHA256_LEN, hex);
	int bad = ferror(f);
	fclose(f);
	free(buf);
	return bad ? mq_fail(err, MQ_ERR_INPUT, "cannot read '%s'", path) : 0;
}
