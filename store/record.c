#include "store/record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

void tcz_wb_init(tcz_wbuf *w)
{
	*w = (tcz_wbuf){0};
}

void tcz_wb_free(tcz_wbuf *w)
{
	free(w->p);
	*w = (tcz_wbuf){0};
}

void tcz_wb_bytes(tcz_wbuf *w, const void *p, size_t n)
{
	if (w->err || n == 0)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n)
			cap *= 2;
		unsigned char *np = realloc(w->p, cap);
		if (!np) {
			w->err = -ENOMEM;
			return;
		}
		w->p = np;
		w->cap = cap;
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

void tcz_wb_u8(tcz_wbuf *w, uint8_t v)
{
	tcz_wb_bytes(w, &v, 1);
}

void tcz_wb_u32(tcz_wbuf *w, uint32_t v)
{
	unsigned char b[4];
	for (int i = 0; i < 4; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	tcz_wb_bytes(w, b, 4);
}

void tcz_wb_u64(tcz_wbuf *w, uint64_t v)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	tcz_wb_bytes(w, b, 8);
}

void tcz_wb_f64(tcz_wbuf *w, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	tcz_wb_u64(w, u);
}

void tcz_wb_str(tcz_wbuf *w, const char *s)
{
	size_t n = strlen(s);
	tcz_wb_u32(w, (uint32_t)n);
	tcz_wb_bytes(w, s, n);
}

int tcz_rec_finish(tcz_wbuf *w)
{
	if (w->err)
		return w->err;
	tcz_wb_u64(w, XXH3_64bits(w->p, w->len));
	return w->err;
}

int tcz_rec_open(tcz_rbuf *r, const void *p, size_t len)
{
	*r = (tcz_rbuf){0};
	if (len < 8)
		return -EIO;
	const unsigned char *b = p;
	uint64_t want = 0;
	for (int i = 7; i >= 0; i--)
		want = (want << 8) | b[len - 8 + (size_t)i];
	if (XXH3_64bits(p, len - 8) != want)
		return -EIO;
	r->p = p;
	r->len = len - 8;
	return 0;
}

const void *tcz_rb_bytes(tcz_rbuf *r, size_t n)
{
	if (r->err || n > r->len - r->off) {
		r->err = -EBADMSG;
		return NULL;
	}
	const void *q = r->p + r->off;
	r->off += n;
	return q;
}

uint8_t tcz_rb_u8(tcz_rbuf *r)
{
	const unsigned char *b = tcz_rb_bytes(r, 1);
	return b ? b[0] : 0;
}

uint32_t tcz_rb_u32(tcz_rbuf *r)
{
	const unsigned char *b = tcz_rb_bytes(r, 4);
	uint32_t v = 0;
	if (b)
		for (int i = 3; i >= 0; i--)
			v = (v << 8) | b[i];
	return v;
}

uint64_t tcz_rb_u64(tcz_rbuf *r)
{
	const unsigned char *b = tcz_rb_bytes(r, 8);
	uint64_t v = 0;
	if (b)
		for (int i = 7; i >= 0; i--)
			v = (v << 8) | b[i];
	return v;
}

double tcz_rb_f64(tcz_rbuf *r)
{
	uint64_t u = tcz_rb_u64(r);
	double d;
	memcpy(&d, &u, 8);
	return d;
}

char *tcz_rb_strdup(tcz_rbuf *r)
{
	uint32_t n = tcz_rb_u32(r);
	const char *s = tcz_rb_bytes(r, n);
	if (!s)
		return NULL;
	if (memchr(s, 0, n)) {
		r->err = -EBADMSG;
		return NULL;
	}
	char *d = malloc((size_t)n + 1);
	if (!d) {
		r->err = -ENOMEM;
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

int tcz_rb_end(const tcz_rbuf *r)
{
	if (r->err)
		return r->err;
	return r->off == r->len ? 0 : -EBADMSG;
}
