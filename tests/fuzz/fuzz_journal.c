/*
 * The resume journal reader: the input is a whole journal file. Its identity
 * is fixed (32 bytes of 0x5a) and so is the unit count (4), so that inputs
 * built from the seeds get past the header.
 */
#include "fuzz.h"

#include <string.h>

#include "journal.h"
#include "status.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mq_log_init(0, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path;
	mq_fuzz_memfile(data, size, &path);
	uint8_t id[MQ_SHA256_LEN];
	memset(id, 0x5a, sizeof(id));
	struct mq_journal_load l;
	if (mq_journal_read(path, id, 4, &l) == 0) {
		if (l.valid_len > size)
			mq_fuzz_abort("the intact part is longer than the file");
		for (int i = 0; i < l.n; i++) {
			const char *p = l.entries[i].rec;
			if (p < l.data || p + l.entries[i].len > l.data + size)
				mq_fuzz_abort("an entry outside the file");
		}
		mq_journal_load_release(&l);
	}
	return 0;
}
