/* GGUF files: strict parsing of an untrusted GGUF v2/v3 (little-endian)
 * file held in memory, its metadata for `tczfs info`, and the byte ranges
 * an importer stores verbatim to rebuild the file exactly.
 *
 * Format (ggml docs/gguf.md): "GGUF", u32 version, u64 tensor count,
 * u64 KV count, the KVs (string key, u32 value type, value), the tensor
 * infos (string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64
 * offset relative to the data section), padding to `general.alignment`
 * (32 when absent), then the data section. Strings are a u64 length and
 * that many bytes. Limits and checks: docs/draft-gguf.md. */
#ifndef TCZ_GGUF_H
#define TCZ_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define TCZ_GGUF_MAX_DIMS 4u	   /* ggml's GGML_MAX_DIMS */
#define TCZ_GGUF_NAME_MAX 64u	   /* tensor names, bytes (the spec's cap) */
#define TCZ_GGUF_KEY_MAX 65535u	   /* keys, bytes (the spec's cap) */
#define TCZ_GGUF_MAX_DEPTH 8u	   /* arrays nested at most this deep */
#define TCZ_GGUF_DEFAULT_ALIGN 32u /* when general.alignment is absent */

/* KV value types, numbered as in the file. */
enum {
	TCZ_GGUF_U8 = 0,
	TCZ_GGUF_I8 = 1,
	TCZ_GGUF_U16 = 2,
	TCZ_GGUF_I16 = 3,
	TCZ_GGUF_U32 = 4,
	TCZ_GGUF_I32 = 5,
	TCZ_GGUF_F32 = 6,
	TCZ_GGUF_BOOL = 7,
	TCZ_GGUF_STRING = 8,
	TCZ_GGUF_ARRAY = 9,
	TCZ_GGUF_U64 = 10,
	TCZ_GGUF_I64 = 11,
	TCZ_GGUF_F64 = 12,
	TCZ_GGUF_VTYPE_COUNT
};

/* "uint8", "string", "array", ...; NULL for an invalid type. */
const char *tcz_gguf_vtype_name(uint32_t t);

typedef struct tcz_gguf_kv {
	char *key;	 /* NUL-terminated (keys hold no NUL byte) */
	uint32_t type;	 /* TCZ_GGUF_* */
	uint64_t offset; /* file offset of the value (after its type) */
	uint64_t size;	 /* bytes the value takes in the file */
	/* Scalars: integers and bools in u (unsigned types, bool) or i
	 * (signed types, sign-extended), floats in f. */
	union {
		uint64_t u;
		int64_t i;
		double f;
	} v;
	const char *str;  /* STRING: points into the parsed buffer */
	uint64_t str_len; /* STRING: bytes (no NUL terminator) */
	uint32_t arr_type; /* ARRAY: element type */
	uint64_t arr_len;  /* ARRAY: element count */
} tcz_gguf_kv;

typedef struct tcz_gguf_tensor {
	char *name;	   /* NUL-terminated (names hold no NUL byte) */
	uint32_t type;	   /* ggml type (codec/ggml.h) */
	uint32_t n_dims;   /* 1..TCZ_GGUF_MAX_DIMS */
	uint64_t dims[TCZ_GGUF_MAX_DIMS]; /* GGUF order: dims[0] = row length;
					     unused ones are 1 */
	uint64_t numel;
	uint64_t offset;   /* relative to the data section */
	uint64_t nbytes;   /* the block formula's size */
	uint64_t info_index; /* position among the file's tensor infos */
} tcz_gguf_tensor;

typedef struct tcz_gguf_file {
	uint32_t version;	/* 2 or 3 */
	uint32_t alignment;	/* general.alignment or 32 */
	uint64_t file_size;
	uint64_t header_len;	/* bytes up to the end of the tensor infos */
	uint64_t data_offset;	/* file offset of the data section: header_len
				   rounded up to the alignment */
	size_t n_kv;
	tcz_gguf_kv *kv;	/* in file order */
	size_t n_tensors;
	tcz_gguf_tensor *tensors; /* sorted by offset */
} tcz_gguf_file;

/* Parses and validates the GGUF file held in buf[len] (the whole file).
 * The result points into buf (string values): keep buf while it is used.
 * On failure err receives one line naming the key or tensor and the
 * problem, and *out is left empty.
 * Errors: -EBADMSG malformed file (err says why); -ENOMEM. */
int tcz_gguf_parse(const void *buf, size_t len, tcz_gguf_file *out,
		   char *err, size_t errlen);

void tcz_gguf_free(tcz_gguf_file *f); /* fields only; f itself not freed */

/* The KV named key, or NULL. */
const tcz_gguf_kv *tcz_gguf_find(const tcz_gguf_file *f, const char *key);

/* What `tczfs info` shows. Integers are -1 when the key is absent or not
 * an integer; architecture is NULL when absent (it is not NUL-terminated:
 * architecture_len bytes). */
typedef struct tcz_gguf_info {
	const char *architecture; /* general.architecture */
	size_t architecture_len;
	int64_t context_length;	  /* <arch>.context_length */
	int64_t embedding_length; /* <arch>.embedding_length */
	int64_t block_count;	  /* <arch>.block_count */
	int64_t vocab_size;	  /* length of tokenizer.ggml.tokens */
	int64_t file_type;	  /* general.file_type */
} tcz_gguf_info;

void tcz_gguf_get_info(const tcz_gguf_file *f, tcz_gguf_info *out);

#define TCZ_GGUF_JSON_ARRAY_MAX 64u /* longer arrays are summarised */
#define TCZ_GGUF_JSON_FIRST 8u	    /* items a summary keeps */

/* A JSON object of every KV pair, key -> value, in file order. Numbers
 * and bools are JSON numbers and bools (a u64 above 2^63-1 becomes a
 * decimal string, a NaN or infinite float null), strings are strings
 * (invalid UTF-8 replaced by U+FFFD), arrays of at most
 * TCZ_GGUF_JSON_ARRAY_MAX items are arrays, longer ones
 * {"type": "string", "length": N, "first": [the first 8 items]}. buf and
 * len are the buffer f was parsed from. Returns NULL when out of memory. */
json_t *tcz_gguf_kv_json(const tcz_gguf_file *f, const void *buf,
			 size_t len);

/* The file as consecutive extents, in file order, covering [0, file_size)
 * exactly: kind BYTES for bytes that are not tensor data (the header, KVs
 * and tensor infos with the padding after them, padding between tensors,
 * trailing padding after the last one), to store verbatim; kind TENSOR
 * for tensor `tensor`'s data (an index into f->tensors). Zero-length
 * extents are left out. *out is malloc'd (at most 2 * n_tensors + 2
 * entries). Errors: -ENOMEM. */
enum { TCZ_GGUF_EXT_BYTES = 0, TCZ_GGUF_EXT_TENSOR = 1 };

typedef struct tcz_gguf_extent {
	uint64_t offset, length; /* in the file */
	int kind;
	size_t tensor;		 /* TENSOR: index into f->tensors */
} tcz_gguf_extent;

int tcz_gguf_extents(const tcz_gguf_file *f, tcz_gguf_extent **out,
		     size_t *n);

#endif
