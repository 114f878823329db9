#include "outmeta.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "safetensors.h"
#include "torch.h"

/* The safetensors __metadata__ of an open file, as cJSON (NULL if it has none). */
static int st_metadata(const char *path, int fd, uint64_t size, cJSON **meta, struct mq_error *err)
{
	char *json = NULL;
	uint64_t n = 0;
	int rc = mq_st_read_raw(path, fd, size, &json, &n, err);
	if (rc)
		return rc;
	cJSON *root = cJSON_ParseWithLength(json, (size_t)n);
	free(json);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': the header is not a JSON object", path);
	}
	*meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
	cJSON_Delete(root);
	return 0;
}

int mq_output_metadata(const char *path, cJSON **meta, struct mq_error *err)
{
	*meta = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mq_fail(err, MQ_ERR_INPUT, "cannot open '%s': %s", path, strerror(errno));
	unsigned char head[8] = { 0 };
	off_t size = lseek(fd, 0, SEEK_END);
	ssize_t got = pread(fd, head, sizeof(head), 0);
	int rc = 0;
	if (size < 0 || got < 0)
		rc = mq_fail(err, MQ_ERR_INPUT, "cannot read '%s': %s", path, strerror(errno));
	else if (mq_torch_sniff(head, (uint64_t)got) == MQ_TORCH_ZIP) {
		char *raw = NULL;
		uint64_t len = 0;
		struct mq_torch_header h;
		rc = mq_torch_read_raw(path, fd, (uint64_t)size, &raw, &len, err);
		if (!rc)
			rc = mq_torch_parse(path, raw, len, (uint64_t)size, &h, err);
		free(raw);
		if (!rc && h.has_meta && h.meta_size <= MQ_ST_MAX_HEADER) {
			char *text = malloc((size_t)h.meta_size + 1);
			if (text && mq_pread_full(fd, text, (size_t)h.meta_size, h.meta_offset, NULL) == 0) {
				*meta = cJSON_ParseWithLength(text, (size_t)h.meta_size);
				if (!cJSON_IsObject(*meta)) {
					cJSON_Delete(*meta);
					*meta = NULL;
				}
			}
			free(text);
		}
		if (!rc)
			mq_torch_header_release(&h);
	} else {
		rc = st_metadata(path, fd, (uint64_t)size, meta, err);
	}
	close(fd);
	return rc;
}
