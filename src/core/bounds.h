/*
 * bounds: the limits that keep the readers of untrusted files fast and small
 * whatever a file declares. A file beyond one of them is refused with a
 * message that names the file and the limit. Each is far above what real
 * checkpoints need (README, "Limits"); a real model beyond one needs the
 * constant raised here and a rebuild.
 */
#ifndef MQ_BOUNDS_H
#define MQ_BOUNDS_H

/* Tensors in one model, all shards together (the largest published checkpoints hold about 10^5). */
#define MQ_MAX_TENSORS (1 << 19) /* 524288 */
/* Dimensions of one tensor. */
#define MQ_MAX_DIMS 8
/* A safetensors header: the reference reader's MAX_HEADER_SIZE. */
#define MQ_ST_MAX_HEADER 100000000ull
/* A shard index (model.safetensors.index.json): room for MQ_MAX_TENSORS entries of 250 bytes. */
#define MQ_INDEX_MAX_BYTES (128ull << 20)
/* The headers of all files of a model together (safetensors JSON, or ZIP table and data.pkl). */
#define MQ_MAX_HEADER_BYTES (1ull << 30)
/* Records of a torch archive: one storage per tensor at most, and torch's few bookkeeping records. */
#define MQ_ZIP_MAX_RECORDS (MQ_MAX_TENSORS + 64)
/* The central directory of a torch archive. */
#define MQ_ZIP_MAX_DIRECTORY (256ull << 20)
/* data.pkl of a torch archive (torch.save writes about 200 bytes per tensor). */
#define MQ_TORCH_MAX_PICKLE (256ull << 20)
/* Objects the pickle reader builds (torch.save's pickles need about 25 per tensor). */
#define MQ_PICKLE_MAX_OBJECTS (1 << 24)
/* Files and folders below a model folder (a Hugging Face repository holds a few dozen). */
#define MQ_FOLDER_MAX_ENTRIES (1 << 16)
/* Folder levels below a model folder. */
#define MQ_FOLDER_MAX_DEPTH 32
/* A resume journal (a few hundred bytes per work unit). */
#define MQ_JOURNAL_MAX_BYTES (256ull << 20)

#endif
