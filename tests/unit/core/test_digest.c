/* The source digests (XXH3-128, SHA-256) against published values, streamed and combined. */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

#include "digest.h"

static void hex_of(enum mq_digest_algo a, const void *p, size_t n, char *out)
{
	uint8_t d[MQ_DIGEST_MAX];
	assert_int_equal(mq_digest(a, p, n, d), 0);
	for (size_t k = mq_digest_len(a); k < MQ_DIGEST_MAX; k++)
		assert_int_equal(d[k], 0); /* the slot's rest is zero */
	mq_hex(d, mq_digest_len(a), out);
}

/* Known answers: SHA-256 of "abc" from FIPS 180-2; XXH3-128 from Debian's python3-xxhash 3.2.0. */
static void test_digest_known_answers(void **state)
{
	(void)state;
	char hex[2 * MQ_DIGEST_MAX + 1];
	hex_of(MQ_DIGEST_SHA256, "abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_of(MQ_DIGEST_XXH3, "abc", 3, hex);
	assert_string_equal(hex, "06b05ab6733a618578af5f94892f3950");
	hex_of(MQ_DIGEST_XXH3, "", 0, hex);
	assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
	unsigned char b[10240]; /* bytes(range(256)) * 40: past XXH3's internal block */
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (unsigned char)i;
	hex_of(MQ_DIGEST_XXH3, b, sizeof(b), hex);
	assert_string_equal(hex, "1cb22534d0d96975c03d2231ab9348f3");
	assert_int_equal(mq_digest_len(MQ_DIGEST_XXH3), 16);
	assert_int_equal(mq_digest_len(MQ_DIGEST_SHA256), 32);
	assert_string_equal(mq_digest_key(MQ_DIGEST_XXH3), "xxh3_128");
	assert_string_equal(mq_digest_name(MQ_DIGEST_SHA256), "sha256");
}

/* Streaming in odd pieces gives the one-shot digest, for both algorithms. */
static void test_digest_streaming(void **state)
{
	(void)state;
	size_t n = (1u << 20) + 77;
	unsigned char *b = malloc(n);
	assert_non_null(b);
	srand(5);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)rand();
	for (int a = MQ_DIGEST_XXH3; a <= MQ_DIGEST_SHA256; a++) {
		uint8_t one[MQ_DIGEST_MAX], parts[MQ_DIGEST_MAX];
		assert_int_equal(mq_digest((enum mq_digest_algo)a, b, n, one), 0);
		struct mq_hasher h;
		assert_int_equal(mq_hasher_init(&h, (enum mq_digest_algo)a), 0);
		for (size_t at = 0, step = 1; at < n; at += step, step = step * 3 + 1) {
			size_t k = step < n - at ? step : n - at;
			mq_hasher_update(&h, b + at, k);
		}
		mq_hasher_final(&h, parts);
		assert_memory_equal(one, parts, MQ_DIGEST_MAX);
		b[n / 2] ^= 1; /* and one changed bit changes it */
		assert_int_equal(mq_digest((enum mq_digest_algo)a, b, n, parts), 0);
		assert_memory_not_equal(one, parts, mq_digest_len((enum mq_digest_algo)a));
		b[n / 2] ^= 1;
	}
	free(b);
}

/* The digest of slots is the digest of their digests' bytes, each the algorithm's length. */
static void test_digest_slots(void **state)
{
	(void)state;
	uint8_t slots[3 * MQ_DIGEST_MAX], cat[3 * 16], a[MQ_DIGEST_MAX], b[MQ_DIGEST_MAX];
	for (int i = 0; i < 3; i++) {
		char c = (char)('x' + i);
		assert_int_equal(mq_digest(MQ_DIGEST_XXH3, &c, 1, slots + i * MQ_DIGEST_MAX), 0);
		memcpy(cat + 16 * i, slots + i * MQ_DIGEST_MAX, 16);
	}
	assert_int_equal(mq_digest_slots(MQ_DIGEST_XXH3, slots, 3, a), 0);
	assert_int_equal(mq_digest(MQ_DIGEST_XXH3, cat, sizeof(cat), b), 0);
	assert_memory_equal(a, b, MQ_DIGEST_MAX);
	enum mq_digest_algo al = MQ_DIGEST_SHA256;
	assert_int_equal(mq_digest_parse("xxh3", &al), 0);
	assert_int_equal(al, MQ_DIGEST_XXH3);
	assert_int_equal(mq_digest_parse("sha256", &al), 0);
	assert_int_equal(al, MQ_DIGEST_SHA256);
	assert_int_equal(mq_digest_parse("md5", &al), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_known_answers),
		cmocka_unit_test(test_digest_streaming),
		cmocka_unit_test(test_digest_slots),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
