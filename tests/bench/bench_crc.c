/*
 * bench_crc: the CRC-32 of a .pt output's entries, mq_crc32 (ISA-L) against
 * zlib's crc32, and the join of the units' CRCs. Prints one "name value" line
 * per figure (GB/s of bytes checked, best of 5 passes over one buffer):
 *   bench_crc [MiB]     (default 256 MiB, beyond any cache)
 * Also in pieces of 2 MiB, the size a unit writes at a time, and warm in a
 * 256 KiB buffer (the bytes just written by a kernel are in cache). Exits 1 if
 * the two CRCs differ.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "crc.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The CRC of n bytes in pieces of `piece`, by zlib (which = 0) or mq_crc32 (which = 1). */
static uint32_t crc_of(int which, const unsigned char *b, size_t n, size_t piece)
{
	uint32_t crc = 0;
	for (size_t off = 0; off < n; off += piece) {
		size_t m = n - off < piece ? n - off : piece;
		crc = which ? mq_crc32(crc, b + off, m) : (uint32_t)crc32(crc, b + off, (uInt)m);
	}
	return crc;
}

/* Best of 5 passes (each of `reps` runs over the n bytes): bytes per second, and the CRC in *crc. */
static double rate(int which, const unsigned char *b, size_t n, size_t piece, int reps, uint32_t *crc)
{
	double best = 1e30;
	for (int pass = 0; pass < 5; pass++) {
		double t0 = now();
		for (int k = 0; k < reps; k++)
			*crc = crc_of(which, b, n, piece);
		double t = (now() - t0) / reps;
		best = t < best ? t : best;
	}
	return (double)n / best;
}

/* The join of one CRC per 2 MiB piece, as rank 0 does it: joins per second. */
static double combine_rate(size_t n_pieces)
{
	uint32_t crc = 0;
	double t0 = now();
	for (size_t k = 0; k < n_pieces; k++)
		crc = mq_crc32_combine(crc, (uint32_t)k * 2654435761u, 2u << 20);
	double t = now() - t0;
	volatile uint32_t sink = crc;
	(void)sink;
	return (double)n_pieces / (t > 0 ? t : 1e-9);
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
	size_t n = (mib ? mib : 1) << 20, warm = 256u << 10;
	unsigned char *b = malloc(n);
	if (!b)
		return 1;
	srand(1);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)rand();
	const struct {
		const char *name;
		size_t n, piece;
		int reps;
	} cases[] = { { "whole", n, n, 1 }, { "pieces_2mib", n, 2u << 20, 1 }, { "warm_256kib", warm, warm, 200 } };
	int bad = 0;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint32_t z = 0, m = 0;
		double rz = rate(0, b, cases[c].n, cases[c].piece, cases[c].reps, &z);
		double rm = rate(1, b, cases[c].n, cases[c].piece, cases[c].reps, &m);
		printf("zlib_crc32_%s_gb_per_s %.2f\n", cases[c].name, rz / 1e9);
		printf("mq_crc32_%s_gb_per_s %.2f\n", cases[c].name, rm / 1e9);
		printf("speedup_%s %.2f\n", cases[c].name, rm / rz);
		if (z != m) {
			fprintf(stderr, "bench_crc: %s: mq_crc32 %08x, zlib %08x\n", cases[c].name, m, z);
			bad = 1;
		}
	}
	printf("mq_crc32_combine_per_s %.0f\n", combine_rate(100000));
	free(b);
	return bad;
}
