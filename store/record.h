/* Little-endian binary records for the store's values, and big-endian keys.
 *
 * Every record written with tcz_rec_finish ends in an XXH3-64 of the bytes
 * before it, so a flipped bit in metadata is detected like one in data. */
#ifndef TCZ_RECORD_H
#define TCZ_RECORD_H

#include <stddef.h>
#include <stdint.h>

typedef struct tcz_wbuf {
	unsigned char *p;
	size_t len, cap;
	int err; /* first error (-ENOMEM); later writes are no-ops */
} tcz_wbuf;

void tcz_wb_init(tcz_wbuf *w);
void tcz_wb_free(tcz_wbuf *w);
void tcz_wb_bytes(tcz_wbuf *w, const void *p, size_t n);
void tcz_wb_u8(tcz_wbuf *w, uint8_t v);
void tcz_wb_u32(tcz_wbuf *w, uint32_t v);
void tcz_wb_u64(tcz_wbuf *w, uint64_t v);
void tcz_wb_f64(tcz_wbuf *w, double v);
void tcz_wb_str(tcz_wbuf *w, const char *s); /* u32 length + bytes */
/* Appends the checksum; returns w->err. */
int tcz_rec_finish(tcz_wbuf *w);

typedef struct tcz_rbuf {
	const unsigned char *p;
	size_t len, off;
	int err; /* -EBADMSG after an overrun; reads then return zeros */
} tcz_rbuf;

/* Checks the trailing checksum of a record and sets up a reader over the
 * payload. Errors: -EIO when the checksum does not match or the record is
 * shorter than a checksum. */
int tcz_rec_open(tcz_rbuf *r, const void *p, size_t len);
uint8_t tcz_rb_u8(tcz_rbuf *r);
uint32_t tcz_rb_u32(tcz_rbuf *r);
uint64_t tcz_rb_u64(tcz_rbuf *r);
double tcz_rb_f64(tcz_rbuf *r);
/* Returns a pointer into the record (not NUL-terminated) or NULL. */
const void *tcz_rb_bytes(tcz_rbuf *r, size_t n);
/* Returns a malloc'd NUL-terminated copy, or NULL (r->err set). Strings
 * holding NUL bytes are rejected as malformed. */
char *tcz_rb_strdup(tcz_rbuf *r);
/* 0 when every byte was consumed without overrun, else -EBADMSG. */
int tcz_rb_end(const tcz_rbuf *r);

static inline void tcz_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline void tcz_be32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint64_t tcz_get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline uint32_t tcz_get_be32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

#endif
