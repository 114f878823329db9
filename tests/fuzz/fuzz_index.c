/*
 * The shard index (model.safetensors.index.json): the input is the index
 * text. It is written into a private folder that also holds three small
 * shards, a.safetensors (tensors "x" and "y"), b.safetensors ("z") and
 * c.safetensors (no tensors), and loaded with mq_manifest_load, which reads
 * the index, the shards' headers and checks one against the other. A table
 * that loads is also packed and unpacked, as rank 0 broadcasts it.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "status.h"

static const char *index_path;

/* A safetensors file: the u64 length, the header, then data_len zero bytes. */
static void write_shard(const char *name, const char *header, size_t data_len)
{
	size_t n = strlen(header), total = 8 + n + data_len;
	unsigned char *f = calloc(1, total);
	if (!f)
		mq_fuzz_abort("out of memory");
	for (int i = 0; i < 8; i++)
		f[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(f + 8, header, n);
	mq_fuzz_write(name, f, total);
	free(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mq_log_init(0, 1);
	write_shard("a.safetensors",
		    "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		    "\"y\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}",
		    16);
	write_shard("b.safetensors", "{\"z\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2);
	write_shard("c.safetensors", "{\"__metadata__\":{\"format\":\"pt\"}}", 0);
	index_path = mq_fuzz_write("model.safetensors.index.json", "", 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mq_fuzz_write("model.safetensors.index.json", data, size);
	struct mq_manifest m;
	struct mq_error err = { 0 };
	if (mq_manifest_load(index_path, &m, &err) == 0) {
		char *blob = NULL;
		size_t len = 0;
		struct mq_manifest copy;
		if (mq_manifest_pack(&m, &blob, &len, &err) != 0)
			mq_fuzz_abort("cannot pack a loaded manifest");
		if (mq_manifest_unpack(blob, len, &copy, &err) != 0 || copy.n_tensors != m.n_tensors)
			mq_fuzz_abort("an unpacked manifest differs from the loaded one");
		mq_manifest_release(&copy);
		free(blob);
	} else if (!err.code) {
		mq_fuzz_abort("a failure without a message");
	}
	mq_manifest_release(&m);
	return 0;
}
