/*
 * The restricted pickle reader: the input is a data.pkl. A pickle that loads
 * is then read as a state dict (mq_torch_parse) against a fixed table of
 * storage records, archive/data/0 to archive/data/7 of 64 bytes each, as
 * mq_torch_read_raw would have packed it.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pickle.h"
#include "status.h"
#include "torch.h"

#define N_RECORDS 8
#define RECORD_BYTES 64
#define FILE_BYTES 4096

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mq_log_init(0, 1);
	return 0;
}

/* The raw header blob of mq_torch_read_raw: "MQT1", the records, then the pickle. */
static char *blob_of(const uint8_t *data, size_t size, size_t *len)
{
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add(&b, "MQT1", 4);
	mq_buf_add_u64(&b, N_RECORDS + 1);
	const char *pkl = "archive/data.pkl";
	mq_buf_add_u64(&b, 64);
	mq_buf_add_u64(&b, size);
	mq_buf_add_u64(&b, 0);
	mq_buf_add_u64(&b, strlen(pkl));
	mq_buf_adds(&b, pkl);
	for (int i = 0; i < N_RECORDS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "archive/data/%d", i);
		mq_buf_add_u64(&b, 1024 + (uint64_t)i * RECORD_BYTES);
		mq_buf_add_u64(&b, RECORD_BYTES);
		mq_buf_add_u64(&b, 0);
		mq_buf_add_u64(&b, strlen(name));
		mq_buf_adds(&b, name);
	}
	mq_buf_add_u64(&b, size);
	mq_buf_add(&b, data, size);
	if (!mq_buf_ok(&b))
		mq_fuzz_abort("out of memory");
	return mq_buf_detach(&b, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact copy, so that a read past the end is seen */
	unsigned char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	struct mq_pickle pk;
	struct mq_error err = { 0 };
	int rc = mq_pickle_load("'f.pt': data.pkl", copy, size, &pk, &err);
	if (rc == 0) {
		if (pk.root < 0 || pk.root >= pk.n_obj)
			mq_fuzz_abort("a loaded pickle without a root object");
		mq_pickle_release(&pk);
		if (size + 64 <= 1024) { /* the records above start at 1024 */
			size_t len;
			char *blob = blob_of(copy, size, &len);
			struct mq_torch_header h;
			struct mq_error e2 = { 0 };
			if (mq_torch_parse("f.pt", blob, len, FILE_BYTES, &h, &e2) == 0)
				mq_torch_header_release(&h);
			free(blob);
		}
	} else if (!err.code) {
		mq_fuzz_abort("a failure without a message");
	}
	free(copy);
	return 0;
}
