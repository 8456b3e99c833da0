/* ONNX models: strict parsing of an untrusted ModelProto (the protobuf wire
 * format, read by hand: no libprotobuf, no generated code), listing every
 * tensor the file holds and the exact byte ranges of their payloads, so an
 * importer can code the tensor bytes and keep every other byte verbatim.
 *
 * What a tensor is, the generated names, the payload kinds and the limits
 * are described in docs/draft-onnx.md. In short: every TensorProto of the
 * model (graph initializers, tensors in node attributes, both parts of
 * sparse tensors, in subgraphs at any depth, in functions and in training
 * graphs) is listed, in the order of its TensorProto in the file (which is
 * the order of their payloads). Bytes of the file that no range of a
 * weight tensor covers are framing: the importer stores them verbatim. */
#ifndef TCZ_ONNX_H
#define TCZ_ONNX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/dtype.h"

#define TCZ_ONNX_MAX_DEPTH 64u /* nested messages, the model being 1 */
#define TCZ_ONNX_MAX_DIMS 32u  /* dims of one tensor (TCZ_MAX_DIMS) */
#define TCZ_ONNX_NAME_MAX 4096u /* bytes of a generated tensor name */

/* ONNX TensorProto.DataType values this parser knows. */
enum {
	TCZ_ONNX_FLOAT = 1, TCZ_ONNX_UINT8 = 2, TCZ_ONNX_INT8 = 3,
	TCZ_ONNX_UINT16 = 4, TCZ_ONNX_INT16 = 5, TCZ_ONNX_INT32 = 6,
	TCZ_ONNX_INT64 = 7, TCZ_ONNX_STRING = 8, TCZ_ONNX_BOOL = 9,
	TCZ_ONNX_FLOAT16 = 10, TCZ_ONNX_DOUBLE = 11, TCZ_ONNX_UINT32 = 12,
	TCZ_ONNX_UINT64 = 13, TCZ_ONNX_COMPLEX64 = 14,
	TCZ_ONNX_COMPLEX128 = 15, TCZ_ONNX_BFLOAT16 = 16,
	/* 17..20 float8 variants, 21 UINT4, 22 INT4, 23 FLOAT4E2M1,
	 * 24 FLOAT8E8M0: known, listed, not weight tensors */
	TCZ_ONNX_TYPE_MAX = 24,
};

/* Where a tensor's payload is. */
typedef enum tcz_onnx_kind {
	TCZ_ONNX_EMPTY = 0,    /* inline, numel 0: no payload bytes */
	TCZ_ONNX_RAW = 1,      /* raw_data: ranges[0] is exactly the tensor's
				* little-endian bytes */
	TCZ_ONNX_PACKED = 2,   /* float_data / double_data, packed: the ranges
				* (usually one) concatenated are exactly the
				* tensor's little-endian bytes */
	TCZ_ONNX_VARINT = 3,   /* int32_data / int64_data / uint64_data: the
				* ranges hold varints (tcz_onnx_decode_values) */
	TCZ_ONNX_UNPACKED = 4, /* float_data / double_data written unpacked
				* (a tag before every value): decode too */
	TCZ_ONNX_EXTERNAL = 5, /* data_location EXTERNAL: file[ext_off, +ext_len) */
	TCZ_ONNX_STRING_DATA = 6, /* string_data of a STRING tensor (not a
				   * weight): no ranges */
} tcz_onnx_kind;

/* Which part of the model holds the TensorProto. */
typedef enum tcz_onnx_where {
	TCZ_ONNX_INITIALIZER = 0,   /* GraphProto.initializer */
	TCZ_ONNX_SPARSE_INIT = 1,   /* GraphProto.sparse_initializer */
	TCZ_ONNX_CONSTANT = 2,      /* attribute value / sparse_value of a
				     * Constant node (domain "" or ai.onnx) */
	TCZ_ONNX_ATTRIBUTE = 3,     /* any other tensor-valued attribute, and
				     * FunctionProto attribute defaults */
} tcz_onnx_where;

typedef enum tcz_onnx_part {
	TCZ_ONNX_DENSE = 0,          /* a plain TensorProto */
	TCZ_ONNX_SPARSE_VALUES = 1,  /* SparseTensorProto.values */
	TCZ_ONNX_SPARSE_INDICES = 2, /* SparseTensorProto.indices */
} tcz_onnx_part;

/* Bytes [off, off+len) of the model file hold elements [first,
 * first+count) of the tensor. Untagged: the payload of a packed field (or
 * one value of an unpacked one): little-endian values (PACKED) or varints
 * (VARINT). Tagged: count pairs of the field's 1-byte tag and a value (an
 * unpacked run); the tags are part of the range. */
typedef struct tcz_onnx_range {
	uint64_t off, len;
	uint64_t first, count;
	bool tagged;
} tcz_onnx_range;

typedef struct tcz_onnx_tensor {
	char *name;       /* unique in the model (see docs/draft-onnx.md) */
	char *proto_name; /* TensorProto.name as in the file, "" when absent */
	bool generated;   /* name is not proto_name (unnamed or duplicate) */
	int32_t onnx_type;
	bool weight;      /* the type has a tcz dtype: code the payload */
	tcz_dtype dtype;  /* when weight; TCZ_DT_COUNT otherwise */
	uint32_t ndim;
	uint64_t *dims;   /* ndim values (a scalar has none) */
	uint64_t numel;
	uint64_t nbytes;  /* numel x element size (weights), else the payload
			   * size of raw_data / external data (0 strings) */
	tcz_onnx_where where;
	tcz_onnx_part part;
	uint32_t depth;   /* subgraph depth: 0 in a model, function or
			   * training graph; +1 per GRAPH/GRAPHS attribute */
	bool in_function, in_training;
	uint64_t proto_off, proto_len; /* the TensorProto's bytes (payload of
					* its field, no tag or length) */
	tcz_onnx_kind kind;
	uint32_t field;   /* TensorProto field holding the data: 9 raw_data,
			   * 4 float, 5 int32, 7 int64, 10 double, 11 uint64,
			   * 6 string; 0 for EMPTY without data and EXTERNAL */
	size_t n_ranges;  /* RAW: 1; PACKED, VARINT, UNPACKED: >= 1 */
	tcz_onnx_range *ranges; /* in file order */
	bool canonical;   /* VARINT/UNPACKED: re-encoding the decoded values
			   * with tcz_onnx_encode_range gives the same bytes
			   * (minimal varints); always true for RAW/PACKED */
	/* EXTERNAL */
	size_t file;      /* index into tcz_onnx_model.files */
	uint64_t ext_off, ext_len; /* the range in that file */
	bool ext_has_length; /* false: the file's rest from ext_off, which
			      * tcz_onnx_check_external requires to be
			      * ext_len bytes (what ONNX reads) */
} tcz_onnx_tensor;

typedef struct tcz_onnx_opset {
	char *domain; /* "" is the default ai.onnx domain */
	int64_t version;
} tcz_onnx_opset;

typedef struct tcz_onnx_file {
	char *location; /* normalized relative path: no "", "." components */
	size_t n_tensors;
	uint64_t size;  /* set by tcz_onnx_check_external */
} tcz_onnx_file;

typedef struct tcz_onnx_counts {
	size_t initializer, sparse_init, constant, attribute; /* by where */
	size_t subgraph;   /* depth > 0 */
	size_t function, training, external;
	size_t not_weight; /* weight == false */
} tcz_onnx_counts;

typedef struct tcz_onnx_model {
	int64_t ir_version, model_version;
	char *producer_name, *producer_version, *domain; /* "" when absent */
	size_t n_opsets;
	tcz_onnx_opset *opsets;   /* file order */
	size_t n_tensors;
	tcz_onnx_tensor *tensors; /* file order of their TensorProtos */
	size_t n_files;
	tcz_onnx_file *files;     /* external data files, first use first */
	tcz_onnx_counts count;
	uint64_t inline_bytes;    /* sum of the weights' range lengths */
	uint64_t external_bytes;  /* sum of the external weights' ext_len */
} tcz_onnx_model;

/* Parses and validates the ONNX model held in buf[len] (the whole .onnx
 * file). External data files are not read (tcz_onnx_check_external).
 * On failure *out is empty and err receives one line naming the tensor,
 * node, attribute or field and the problem.
 * Errors: -EBADMSG malformed or unsupported file: bad varints (longer than
 * 10 bytes, overflowing 64 bits or the field's type), lengths past the end
 * of the enclosing message, wire types that do not match a known field,
 * groups, nesting deeper than TCZ_ONNX_MAX_DEPTH, a singular field given
 * twice, no graph or ir_version, bad dims (negative, more than 32, size
 * overflow), unknown or missing data_type, data that does not fit the type
 * or the size (raw_data length, value counts, values out of range, two
 * data fields), segments, malformed external data (location missing,
 * unsafe or escaping the model directory, offset/length not decimal,
 * length not the tensor's size, unknown keys), malformed sparse tensors,
 * NUL bytes in names; -ENOMEM. */
int tcz_onnx_parse(const void *buf, size_t len, tcz_onnx_model *out,
		   char *err, size_t errlen);

void tcz_onnx_free(tcz_onnx_model *m); /* fields only; m itself not freed */

/* Writes a weight tensor's nbytes little-endian bytes to dst from the
 * model file file[file_len] it was parsed from (RAW, PACKED: copies;
 * VARINT, UNPACKED: decodes and narrows; EMPTY: nothing).
 * Errors: -EINVAL not a weight, EXTERNAL or STRING_DATA, or ranges
 * outside file_len; -EBADMSG the bytes are not what was parsed. */
int tcz_onnx_decode_values(const tcz_onnx_tensor *t, const void *file,
			   size_t file_len, void *dst);

/* The inverse for one range: writes ranges[r].len bytes to dst from the
 * tensor's little-endian values (nbytes at values), tags included for a
 * tagged range. A lossless rebuild gives the file's bytes back when
 * t->canonical. Errors: -EINVAL not a weight or r out of range; -ERANGE
 * the encoding would not be ranges[r].len bytes (other values, or a
 * non-canonical original): store that range verbatim instead. */
int tcz_onnx_encode_range(const tcz_onnx_tensor *t, size_t r,
			  const void *values, void *dst);

#define TCZ_ONNX_NOFOLLOW 1u /* refuse symbolic links in locations */

/* Checks the external data of a parsed model against the file system:
 * every file of m->files, looked up below the directory of model_path
 * (the .onnx file), exists and is a regular file (symbolic links are
 * followed unless flags has TCZ_ONNX_NOFOLLOW; directories on the way must
 * be directories), is not the model file itself; each external tensor's
 * range lies within its file, a tensor without a length ends exactly at
 * the end of the file, and no two non-empty ranges of one file overlap.
 * Sets m->files[i].size.
 * Errors: -EBADMSG any of these fails (err names the file and the
 * tensor); -ENOMEM; -errno the model's directory cannot be opened. */
int tcz_onnx_check_external(tcz_onnx_model *m, const char *model_path,
			    unsigned flags, char *err, size_t errlen);

/* "FLOAT", "INT64", ... for an ONNX data type; "?" when unknown. */
const char *tcz_onnx_type_name(int32_t onnx_type);

#endif
