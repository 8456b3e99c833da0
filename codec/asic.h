/* Device images (SPEC section 8): a model's matrices tiled, packed and
 * placed on the compute cores of an accelerator described by a profile.
 * The format, the placement rule and the quantization rules are in
 * docs/formats.md; this header summarises them.
 *
 * Pure computation: no I/O, no LMDB. A layout is computed from shapes
 * alone (so the image size is known without any tensor data); the bytes
 * of the image are then produced piecewise from the matrices' f32 rows,
 * which the caller supplies through a callback, so no whole model (nor a
 * whole image) is ever held in memory.
 *
 * Image (little-endian): a 128-byte header, an entry table (104 bytes per
 * entry), a string table (tensor names), zeros up to the data offset (the
 * next tile boundary), then the data: core 0's SRAM image, core 1's, ...
 * Each entry is a block: rows [row0, row0+rows) of one matrix, each row
 * its r_right values followed by zeros up to the row pitch
 * roundup(r_right, lanes) * element size, the rows back to back, zeros up
 * to a tile boundary; with f16 or i8 elements one f32 scale per tile row
 * follows, zeros up to a tile boundary again. A tile row is the smallest
 * number of rows g whose bytes g * pitch fill whole tiles.
 *
 * Checksums are XXH3-64 (seed 0): the header check over header bytes
 * [0, 112), the checksum over bytes [128, image end). */
#ifndef TCZ_ASIC_H
#define TCZ_ASIC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define TCZ_ASIC_MAGIC 0x415a4354u /* the bytes "TCZA" */
#define TCZ_ASIC_VERSION 1u
#define TCZ_ASIC_HEADER_BYTES 128u
#define TCZ_ASIC_ENTRY_BYTES 104u
#define TCZ_ASIC_UNPLACED 0xffffffffu /* device core of an empty block */

/* Limits: larger values are refused as absurd. */
#define TCZ_ASIC_NAME_MAX 31u             /* profile name bytes */
#define TCZ_ASIC_MAX_CORES 65536u
#define TCZ_ASIC_MAX_LANES 4096u
#define TCZ_ASIC_MAX_TILE (1u << 20)      /* bytes */
#define TCZ_ASIC_MAX_SRAM ((uint64_t)1 << 40) /* bytes per core */
#define TCZ_ASIC_MAX_TT_CORES 16u         /* cores of one tensor */
#define TCZ_ASIC_MAX_ENTRIES (1u << 22)
#define TCZ_ASIC_MAX_TENSOR_NAME 65535u   /* bytes */

/* Element types of an image; the values are stored in the header. */
typedef enum tcz_asic_dtype {
	TCZ_ASIC_F32 = 0,
	TCZ_ASIC_F16 = 1,
	TCZ_ASIC_I8 = 2,
} tcz_asic_dtype;

/* Element size in bytes (4, 2, 1), 0 for a value outside the enum. */
size_t tcz_asic_dtype_size(tcz_asic_dtype dt);

/* "f32", "f16", "i8", or NULL for a value outside the enum. */
const char *tcz_asic_dtype_name(tcz_asic_dtype dt);

/* Parses "f32", "f16" or "i8". Errors: -EINVAL any other string. */
int tcz_asic_dtype_parse(const char *s, tcz_asic_dtype *out);

/* A device. */
typedef struct tcz_asic_profile {
	char name[TCZ_ASIC_NAME_MAX + 1]; /* NUL-terminated */
	uint32_t cores;                   /* compute cores */
	uint64_t sram_bytes;              /* SRAM per core */
	uint32_t tile_bytes;
	uint32_t lanes;                   /* SIMD lanes */
	tcz_asic_dtype dtype;             /* element type of the image */
} tcz_asic_profile;

/* The built-in "newport": 256 cores, 8 MiB SRAM each, 64-byte tiles,
 * 16 lanes, f32. */
void tcz_asic_profile_newport(tcz_asic_profile *p);

/* Validates a profile: a name of 1..31 bytes of [A-Za-z0-9._-] starting
 * with a letter or digit; 1..65536 cores; 1..4096 lanes; a tile of
 * 1 B..1 MiB that is a multiple of the element size and of lanes x
 * element size (a tile holds whole SIMD vectors); an SRAM of 1 tile to
 * 1 TiB per core that is a whole number of tiles; a known dtype.
 * Errors: -EINVAL, with one line in err saying which rule (err may be
 * NULL). */
int tcz_asic_profile_check(const tcz_asic_profile *p, char *err,
			   size_t errlen);

/* One matrix of the model: TT core `core` of a tensor (a row-major
 * [r_left, n, r_right] array seen as r_left*n rows of r_right values), or
 * a dense tensor as core 0 with r_left = 1 (see tcz_asic_dense_matrix).
 * A tensor's matrices are all those with its name: cores 0..d-1; d = 1
 * is a dense tensor, d >= 2 a TT (r_left of core 0 and r_right of core
 * d-1 are 1, r_right of core k is r_left of core k+1, no zero
 * dimension). Names are 1..65535 bytes of valid UTF-8. */
typedef struct tcz_asic_matrix {
	const char *name; /* not NUL-terminated: name_len bytes */
	size_t name_len;
	uint32_t core;
	uint64_t r_left, n, r_right;
} tcz_asic_matrix;

/* The dense matrix of a tensor of shape[ndim]: rows = shape[0], cols =
 * the product of the rest; 1-D is one row of shape[0]; 0-D is 1 x 1.
 * Its elements are the tensor's in row-major order.
 * Errors: -EOVERFLOW a product above 2^62. */
int tcz_asic_dense_matrix(uint32_t ndim, const uint64_t *shape,
			  uint64_t *rows, uint64_t *cols);

/* One block of the image (an entry of the entry table). */
typedef struct tcz_asic_entry {
	uint32_t tensor;      /* index into names (the string table) */
	uint32_t core;        /* core index within the tensor */
	uint32_t ncores;      /* the tensor's core count d (1 dense) */
	uint32_t device_core; /* TCZ_ASIC_UNPLACED for an empty matrix */
	uint64_t r_left, n, r_right;
	uint64_t row0, rows;  /* rows [row0, row0+rows) of the matrix */
	uint64_t pitch;       /* row pitch in bytes (packed cols * es) */
	uint32_t tile_rows;   /* g: rows per tile row */
	uint64_t sram_offset; /* in the device core's SRAM image */
	uint64_t file_offset;
	uint64_t length;      /* bytes, a whole number of tiles */
	uint64_t scale_offset; /* f16/i8: where the scales start, from the
				* entry's first byte; f32: 0 */
	size_t matrix;        /* index of the caller's matrix (not stored) */
} tcz_asic_entry;

typedef struct tcz_asic_name {
	const char *s; /* points into the layout's prefix; not NUL-ended */
	uint32_t len;
} tcz_asic_name;

/* A computed layout: everything about the image but its data. */
typedef struct tcz_asic_layout {
	tcz_asic_profile profile;
	uint32_t nentries, nplaced; /* entries [0, nplaced) have bytes */
	tcz_asic_entry *entries;    /* in file order */
	uint32_t nnames;
	tcz_asic_name *names;       /* sorted, bytewise */
	uint64_t data_offset;       /* = prefix bytes */
	uint64_t data_bytes;
	uint64_t image_bytes;       /* data_offset + data_bytes */
	unsigned char *prefix;      /* bytes [0, data_offset) of the image;
				     * checksum field 0 until set */
	int checksum_set;
	uint64_t *core_bytes;       /* [profile.cores] */
	uint32_t *core_blocks;      /* [profile.cores] */
	uint32_t used_cores;        /* cores holding at least one byte */
	uint64_t max_core_bytes;
	double imbalance;           /* max / mean bytes per used core; 1
				     * when no core is used */
} tcz_asic_layout;

/* Lays out n matrices on the profile's device. Deterministic: the result
 * depends on the set of matrices, not on their order nor on the machine.
 * Each matrix is one block, or, when larger than a core's SRAM, split by
 * tile rows into the fewest near-equal blocks that fit. Blocks are placed
 * largest first (ties: by tensor name, core index, first row) on the core
 * with the fewest bytes (ties: the lowest core); a block that does not
 * fit the freest core puts the whole tile rows that fit there and the
 * rest goes on to the next freest core. Matrices without elements get an
 * unplaced entry of no bytes. On failure err receives one line.
 * Errors: -EINVAL a bad profile or a bad matrix (name, shape, duplicate
 * or missing TT core, ranks that do not chain); -ENOSPC the model does
 * not fit the device (err says how many bytes are missing, or which tile
 * row fits no core); -EOVERFLOW more than TCZ_ASIC_MAX_ENTRIES blocks or
 * a string table above 4 GiB; -ENOMEM. */
int tcz_asic_layout_new(const tcz_asic_profile *p, const tcz_asic_matrix *m,
			size_t n, tcz_asic_layout **out, char *err,
			size_t errlen);

void tcz_asic_layout_free(tcz_asic_layout *l); /* NULL is fine */

/* Supplies rows [row0, row0+nrows) of the caller's matrix `matrix` (its
 * index in the array given to tcz_asic_layout_new) as nrows * r_right f32
 * values, row-major, into out (aligned for float; it may lie inside the
 * dst of tcz_asic_read). The same rows may be asked for more than once
 * (an f16/i8 block's scales need its rows again). Returns 0 or a negative
 * errno, which the caller of tcz_asic_read / tcz_asic_checksum gets
 * back. */
typedef int (*tcz_asic_fetch_fn)(void *ctx, size_t matrix, uint64_t row0,
				 uint64_t nrows, float *out);

/* Writes bytes [off, off+len) of the image into dst, fetching only the
 * rows those bytes depend on: a data byte of row r of an f32 block needs
 * row r; with f16/i8 it needs r's whole tile row (for the scale), and so
 * does that tile row's scale. Rows are fetched in batches of about 256
 * KiB of f32 (at least one tile row), so memory stays bounded whatever
 * len; f32 rows wholly in range are fetched straight into dst.
 * The header holds the checksum given to tcz_asic_set_checksum (0 before).
 * Errors: -EINVAL a range past the image; what fetch returned; -ENOMEM. */
int tcz_asic_read(const tcz_asic_layout *l, uint64_t off, size_t len,
		  void *dst, tcz_asic_fetch_fn fetch, void *ctx);

/* Computes the image checksum (XXH3-64 of bytes [128, image_bytes)),
 * reading the data through tcz_asic_read. Integrators compute it once,
 * keep it, and give it to tcz_asic_set_checksum on every later layout.
 * Errors: as tcz_asic_read. */
int tcz_asic_checksum(const tcz_asic_layout *l, tcz_asic_fetch_fn fetch,
		      void *ctx, uint64_t *out);

/* Puts the checksum into the header bytes of the layout's prefix. A
 * layout is not changed otherwise: tcz_asic_read, tcz_asic_checksum, the
 * pack calls and tcz_asic_layout_json may run in several threads at once
 * (not concurrently with this call). */
void tcz_asic_set_checksum(tcz_asic_layout *l, uint64_t checksum);

/* Packs rows [row0, row0+nrows) of entry e (relative to the entry: matrix
 * row entries[e].row0 + row0 first) from nrows * r_right f32 values into
 * dst: nrows * pitch bytes, the entry's bytes [row0*pitch,
 * (row0+nrows)*pitch). For f16/i8 the rows must be whole tile rows: row0
 * a multiple of g and nrows a multiple of g or reaching the entry's end.
 * Errors: -EINVAL bad entry or rows. */
int tcz_asic_pack_rows(const tcz_asic_layout *l, uint32_t e, uint64_t row0,
		       uint64_t nrows, const float *rows, void *dst);

/* Writes the f32 scales of the tile rows made of rows [row0, row0+nrows)
 * of entry e (whole tile rows, as above): 4 bytes per tile row, the
 * entry's bytes from scale_offset + 4 * row0 / g.
 * Errors: -EINVAL an f32 image, bad entry or rows. */
int tcz_asic_pack_scales(const tcz_asic_layout *l, uint32_t e,
			 uint64_t row0, uint64_t nrows, const float *rows,
			 void *dst);

/* Validates a whole image of len bytes: magic, version, header check,
 * profile, counts and sizes, checksum, string table (sorted, unique,
 * UTF-8, all used), every entry (shape, pitch, tile rows, length, scale
 * offset, placement within the core's SRAM, tile alignment, file order:
 * contiguous per core, no overlap, no gap), that the blocks of each
 * matrix cover its rows exactly and TT ranks chain, zero padding, i8
 * codes in -127..127, scales (i8: finite, >= 0; f16: powers of two).
 * Never reads outside [img, img+len). On failure err receives one line.
 * Errors: -EBADMSG a malformed image; -EPROTONOSUPPORT another version;
 * -ENOMEM. */
int tcz_asic_check(const void *img, size_t len, char *err, size_t errlen);

/* layout.json: the profile, sizes, every block with its placement, the
 * per-core totals and the imbalance (format in docs/formats.md).
 * Deterministic; dump with json_dumps(j, JSON_INDENT(1)) or as wished.
 * Returns a new reference, NULL when out of memory. */
json_t *tcz_asic_layout_json(const tcz_asic_layout *l);

#endif
