/*
 * The CRC-32 of outputs (ISA-L's) against zlib's crc32, which .pt readers and
 * earlier versions' journals agree with: every length and start, chained in odd
 * pieces from any value, and the pieces' CRCs joined as rank 0 joins units'.
 */
#include "test_util.h"

#include <zlib.h>

#include "crc.h"

#define BIG ((1u << 20) + 3)

static unsigned char *random_bytes(size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	assert_non_null(b);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		b[i] = (unsigned char)(x >> 24);
	}
	return b;
}

static uint32_t zlib_crc(uint32_t crc, const unsigned char *p, size_t n)
{
	return (uint32_t)crc32(crc, p, (uInt)n);
}

/* The check value of CRC-32/ISO-HDLC, the empty run, and a NULL pointer with no bytes. */
static void test_crc_known_answers(void **state)
{
	(void)state;
	assert_int_equal(mq_crc32(0, "123456789", 9), 0xcbf43926u);
	assert_int_equal(mq_crc32(0, "", 0), 0);
	assert_int_equal(mq_crc32(0x12345678u, NULL, 0), 0x12345678u);
	unsigned char zeros[32] = { 0 };
	assert_int_equal(mq_crc32(0, zeros, 32), zlib_crc(0, zeros, 32));
}

/* Every length to 600 (ISA-L's tails under 16, 32, 64 and 256 bytes) and the named ones, from each start mod 8. */
static void test_crc_lengths_and_starts(void **state)
{
	(void)state;
	unsigned char *b = random_bytes(BIG + 8, 1);
	for (size_t len = 0; len <= 600; len++)
		for (size_t off = 0; off < 8; off++)
			assert_int_equal(mq_crc32(0, b + off, len), zlib_crc(0, b + off, len));
	const size_t lens[] = { 1023, 1024, 1025, 4095, 4096, 65536 + 7, BIG };
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (size_t off = 0; off < 8; off++)
			assert_int_equal(mq_crc32(0, b + off, lens[k]), zlib_crc(0, b + off, lens[k]));
	free(b);
}

/* Chained in odd pieces (1 to 5000 bytes, odd starts) from 0 or any value, as a unit's writes chain. */
static void test_crc_chained_in_pieces(void **state)
{
	(void)state;
	unsigned char *b = random_bytes(BIG, 2);
	const uint32_t seeds[] = { 0, 1, 0xffffffffu, 0xcbf43926u };
	for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		uint32_t crc = seeds[s], x = 7 + (uint32_t)s;
		for (size_t off = 0; off < BIG;) {
			x = x * 1103515245u + 12345u;
			size_t piece = 1 + (x >> 8) % 5000;
			piece = piece < BIG - off ? piece : BIG - off;
			crc = mq_crc32(crc, b + off, piece);
			off += piece;
		}
		assert_int_equal(crc, zlib_crc(seeds[s], b, BIG));
	}
	free(b);
}

/* Each piece's CRC from 0, joined from 0 in order (collect.c), is the whole run's; empty runs join as nothing. */
static void test_crc_combine(void **state)
{
	(void)state;
	unsigned char *b = random_bytes(BIG, 3);
	const uint32_t whole = zlib_crc(0, b, BIG);
	uint32_t joined = 0, x = 11;
	for (size_t off = 0; off < BIG;) {
		x = x * 1103515245u + 12345u;
		size_t piece = (x >> 8) % 70000; /* 0 too: a unit that wrote nothing */
		piece = piece < BIG - off ? piece : BIG - off;
		joined = mq_crc32_combine(joined, mq_crc32(0, b + off, piece), piece);
		off += piece;
	}
	assert_int_equal(joined, whole);
	assert_int_equal(mq_crc32_combine(whole, 0, 0), whole);
	assert_int_equal(mq_crc32_combine(0, whole, BIG), whole);
	const size_t cut = 12345;
	assert_int_equal(mq_crc32_combine(mq_crc32(0, b, cut), mq_crc32(0, b + cut, BIG - cut), BIG - cut), whole);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_known_answers),
		cmocka_unit_test(test_crc_lengths_and_starts),
		cmocka_unit_test(test_crc_chained_in_pieces),
		cmocka_unit_test(test_crc_combine),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
