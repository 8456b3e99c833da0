/* The handle table: fi->fh of open files and directories.
 *
 * The kernel may send RELEASE while a READ or READDIR of the same handle
 * is still being served (the reading process was killed, its request
 * interrupted). A handle therefore names a slot and its generation; a
 * request takes a reference under the table's lock, and the object is
 * freed only when it is both released and no request holds it. */
#include <errno.h>
#include <stdlib.h>

#include "fs/internal.h"

static int slot_of(tczfs *fs, uint64_t fh, size_t *i)
{
	uint64_t s = fh & 0xffffffffu;
	if (s == 0 || s > fs->n_slots)
		return -1;
	*i = (size_t)(s - 1);
	return fs->slots[*i].gen == (uint32_t)(fh >> 32) &&
			       fs->slots[*i].obj
		       ? 0
		       : -1;
}

uint64_t fs_handle_new(tczfs *fs, int kind, void *obj,
		       void (*free_fn)(tczfs *, void *))
{
	pthread_mutex_lock(&fs->hlock);
	size_t i = 0;
	while (i < fs->n_slots && fs->slots[i].obj)
		i++;
	if (i == fs->n_slots) {
		size_t n = fs->n_slots ? fs->n_slots * 2 : 64;
		if (n > 0xffffffffu) {
			pthread_mutex_unlock(&fs->hlock);
			return 0;
		}
		fs_slot *ns = realloc(fs->slots, n * sizeof *ns);
		if (!ns) {
			pthread_mutex_unlock(&fs->hlock);
			return 0;
		}
		for (size_t k = fs->n_slots; k < n; k++)
			ns[k] = (fs_slot){0};
		fs->slots = ns;
		fs->n_slots = n;
	}
	fs_slot *s = &fs->slots[i];
	s->obj = obj;
	s->kind = kind;
	s->free_fn = free_fn;
	s->gen++;
	s->refs = 1;
	s->closed = 0;
	uint64_t fh = ((uint64_t)s->gen << 32) | (i + 1);
	pthread_mutex_unlock(&fs->hlock);
	return fh;
}

void *fs_handle_get(tczfs *fs, uint64_t fh, int kind)
{
	void *obj = NULL;
	size_t i;
	pthread_mutex_lock(&fs->hlock);
	if (slot_of(fs, fh, &i) == 0 && !fs->slots[i].closed &&
	    fs->slots[i].kind == kind) {
		fs->slots[i].refs++;
		obj = fs->slots[i].obj;
	}
	pthread_mutex_unlock(&fs->hlock);
	return obj;
}

static void drop(tczfs *fs, uint64_t fh, int close)
{
	size_t i;
	void *obj = NULL;
	void (*fn)(tczfs *, void *) = NULL;
	pthread_mutex_lock(&fs->hlock);
	if (slot_of(fs, fh, &i) == 0 && !(close && fs->slots[i].closed)) {
		fs_slot *s = &fs->slots[i];
		if (close)
			s->closed = 1;
		if (--s->refs == 0) {
			obj = s->obj;
			fn = s->free_fn;
			s->obj = NULL;
		}
	}
	pthread_mutex_unlock(&fs->hlock);
	if (obj)
		fn(fs, obj); /* outside the lock: it may take others */
}

void fs_handle_put(tczfs *fs, uint64_t fh)
{
	drop(fs, fh, 0);
}

void fs_handle_close(tczfs *fs, uint64_t fh)
{
	drop(fs, fh, 1);
}

void fs_handles_free(tczfs *fs)
{
	for (size_t i = 0; i < fs->n_slots; i++)
		if (fs->slots[i].obj)
			fs->slots[i].free_fn(fs, fs->slots[i].obj);
	free(fs->slots);
	fs->slots = NULL;
	fs->n_slots = 0;
}
