/* vdlvm: the linear layout — one copy; each logical extent maps to one
 * physical extent, placed in proportion to the devices' free space.
 * Every read or write is split at extent boundaries and sent to the
 * device holding each extent.  I/O from any thread: map_lock shared for
 * the whole request (try-locked with VD_IO_NOWAIT); see pool/layout.h.
 *
 * Asynchronous I/O (linear_submit; vd_vol_submit in pool/vol.c has the
 * locking argument): the core holds map_lock shared (and write_lock for a
 * write) from before linear_submit until the request is complete, so the
 * pieces' devices and offsets stay valid.  Every piece is checked before
 * the first is started (vd_dev_async_ok, pool/dev.c: the device's async
 * path pays: remote, or local O_DIRECT, not a buffered local file; usable,
 * not encrypted, block aligned; a write to a device whose PE is moving
 * needs the mover's hook in dev.c: the synchronous path), so a refusal
 * before anything was started is -EAGAIN for the whole request.  A device
 * refusing a later piece (queue full) ends that piece with -EAGAIN: the
 * caller redoes the whole request synchronously (a write of the same
 * bytes again is harmless: nothing was acknowledged).  Pieces go through
 * vd_dev_submit, whose completion (the driver's thread) does what
 * vd_dev_pwrite / vd_dev_flush do after the bdev call (the write
 * generation, flushed_gen under the leaf flush_lock, the device's error
 * counters, a rate-limited log line) and hands the result on. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

#include "layout.h"

static int linear_plan(vd_pool *p, const char *name,
                       const struct vd_vol_opts *opts,
                       const struct vd_op_vol *ov, struct vd_opbuf *ops)
{
    int r = vd_extent_plan(p, ov->id, 0, 0, ov->le_count, ops);
    if (r == -ENOSPC)
        r = vd_extent_no_space(p, name, ov->le_count);
    return r;
}

static int linear_plan_extend(struct vd_vol *v, uint64_t le_count,
                              struct vd_opbuf *ops)
{
    int r = 0;
    for (uint32_t leg = 0; leg < v->copies && r == 0; leg++)
        r = vd_extent_plan(v->pool, v->id, leg, v->le_count,
                           le_count - v->le_count, ops);
    return r;
}

/* Calls fn for each extent-bounded piece of [off, off+len); map_lock held
 * shared by the caller. */
static int vol_io(vd_vol *v, void *buf, size_t len, uint64_t off, bool write,
                  unsigned flags)
{
    vd_pool *p = v->pool;
    uint64_t es = p->extent_size;
    char *b = buf;
    int r = 0;

    if (flags & VD_IO_NOWAIT) {
        if (pthread_rwlock_tryrdlock(&v->map_lock))
            return -EAGAIN;
    } else {
        pthread_rwlock_rdlock(&v->map_lock);
    }
    /* under a thin volume, the bytes addressed are its data space */
    uint64_t lim = v->upper ? (v->le_count - v->data_le0) * es : v->size;
    if (off > lim || len > lim - off) {
        r = -ERANGE;
        goto out;
    }
    while (len) {
        uint64_t le = off / es + v->data_le0, within = off % es;
        size_t n = len < es - within ? len : es - within;
        const struct vd_pe *e = &v->map[le * v->copies];
        if (e->dev == VD_NO_DEV) {
            if (write) {
                vd_log(VD_LOG_ERR, "volume '%s/%s': extent %llu is not mapped",
                       p->name, v->name, (unsigned long long)le);
                r = -EIO;
                goto out;
            }
            memset(b, 0, n);
        } else {
            struct vd_dev *d = &p->devs[e->dev];
            uint64_t doff = d->data_offset + e->pe * es + within;
            if (__atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != VD_DEV_OK) {
                if (vd_dev_log_ok(d))
                    vd_log(VD_LOG_ERR,
                           "volume '%s/%s': device '%s' is "
                           "unavailable: %s",
                           p->name, v->name, d->name, d->state_msg);
                r = -EIO;
                goto out;
            }
            if (flags & VD_IO_NOWAIT) {
                if ((r = vd_dev_io_nowait(d, b, n, doff, write, flags)) < 0)
                    goto out;
            } else {
                r = write ? vd_dev_pwrite(d, b, n, doff, flags)
                          : vd_dev_pread(d, b, n, doff);
            }
            if (r < 0)
                goto out;
        }
        b += n;
        off += n;
        len -= n;
    }
out:
    pthread_rwlock_unlock(&v->map_lock);
    return r;
}

static int linear_pread(vd_vol *v, void *buf, size_t len, uint64_t off,
                        unsigned flags)
{
    return vol_io(v, buf, len, off, false, flags);
}

static int linear_pwrite(vd_vol *v, const void *buf, size_t len, uint64_t off,
                         unsigned flags)
{
    return vol_io(v, (void *)buf, len, off, true, flags);
}

/* A linear volume's flush covers exactly the devices its extents map: a
 * device of the pool that is unreachable but holds none of this volume's
 * extents does not fail it.  The set is taken under map_lock, the flushes
 * run without it (a remote flush may take the device's timeout, and an
 * extend waiting for map_lock must not stall every request behind it).  A
 * write that completed before the call was mapped when it ran, and
 * mappings only grow while the volume is open, so the set covers it. */
static int linear_flush(vd_vol *v)
{
    vd_pool *p = v->pool;
    bool mapped[VD_MAX_DEVS] = { false };
    int r = 0;

    pthread_rwlock_rdlock(&v->map_lock);
    for (uint64_t i = 0; i < v->le_count * v->copies; i++)
        if (v->map[i].dev < VD_MAX_DEVS)
            mapped[v->map[i].dev] = true;
    pthread_rwlock_unlock(&v->map_lock);
    for (uint32_t i = 0; i < p->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        if (!mapped[i])
            continue;
        if (!d->bdev ||
            __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != VD_DEV_OK) {
            if (vd_dev_log_ok(d))
                vd_log(VD_LOG_ERR,
                       "volume '%s/%s': flush: device '%s' is "
                       "unavailable: %s",
                       p->name, v->name, d->name, d->state_msg);
            r = -EIO;
            continue;
        }
        if (vd_dev_flush(d) < 0)
            r = -EIO;
    }
    return r;
}

/* ---- asynchronous I/O ---------------------------------------------------- */
static void lpiece_done(struct vd_dev_bio *db, int r)
{
    vd_vol_bio_piece_end(db->priv, r);
}

/* Core holds map_lock shared (and write_lock for writes); see the header.
 * Two passes: the first checks every piece (vd_dev_async_ok: the device
 * pays and can take it now) and counts them, without allocating, so that
 * a request the path does not take (a buffered local file) costs little;
 * the second builds and starts them. */
static int linear_submit(vd_vol *v, struct vd_vol_bio *vb)
{
    vd_pool *p = v->pool;
    uint64_t es = p->extent_size;
    struct vd_dev_bio *pcs;
    size_t n = 0;

    if (vb->op == VD_VOL_FLUSH) {
        bool mapped[VD_MAX_DEVS] = { false };
        for (uint64_t i = 0; i < v->le_count * v->copies; i++)
            if (v->map[i].dev < VD_MAX_DEVS)
                mapped[v->map[i].dev] = true;
        for (uint32_t i = 0; i < p->ndevs; i++)
            if (mapped[i]) {
                if (!vd_dev_async_ok(&p->devs[i], 0, 0, VD_BIO_FLUSH))
                    return -EAGAIN;
                n++;
            }
        if (!(pcs = calloc(n ? n : 1, sizeof(*pcs))))
            return -EAGAIN;
        n = 0;
        for (uint32_t i = 0; i < p->ndevs; i++) {
            struct vd_dev *d = &p->devs[i];
            if (!mapped[i])
                continue;
            uint64_t gen = __atomic_load_n(&d->wgen, __ATOMIC_ACQUIRE);
            pthread_mutex_lock(&d->flush_lock);
            bool clean = d->flushed_gen >= gen;
            pthread_mutex_unlock(&d->flush_lock);
            if (clean)
                continue; /* nothing written since its last good flush */
            pcs[n++] = (struct vd_dev_bio){ .bio.op = VD_BIO_FLUSH, .d = d };
        }
    } else {
        uint64_t off = vb->off, len = vb->len;
        if (off > v->size || len > v->size - off || !len)
            return -EAGAIN; /* the synchronous path says why */
        while (len) {       /* pass 1: check */
            uint64_t le = off / es + v->data_le0, within = off % es;
            size_t k = len < es - within ? len : es - within;
            const struct vd_pe *e = &v->map[le * v->copies];
            if (e->dev == VD_NO_DEV) {
                if (vb->op == VD_VOL_WRITE)
                    return -EAGAIN; /* the synchronous path logs it */
            } else {
                struct vd_dev *d = &p->devs[e->dev];
                if (!vd_dev_async_ok(d, d->data_offset + e->pe * es + within, k,
                                     vb->op))
                    return -EAGAIN;
                n++;
            }
            off += k;
            len -= k;
        }
        if (!(pcs = calloc(n ? n : 1, sizeof(*pcs))))
            return -EAGAIN;
        n = 0;
        char *b = vb->buf;
        off = vb->off;
        len = vb->len;
        while (len) { /* pass 2: build; unmapped extents read as zeroes */
            uint64_t le = off / es + v->data_le0, within = off % es;
            size_t k = len < es - within ? len : es - within;
            const struct vd_pe *e = &v->map[le * v->copies];
            if (e->dev == VD_NO_DEV) {
                memset(b, 0, k);
            } else {
                struct vd_dev *d = &p->devs[e->dev];
                pcs[n++] = (struct vd_dev_bio){
                    .bio = { .op = vb->op,
                             .flags = vb->flags & VD_IO_FUA,
                             .buf = b,
                             .len = k,
                             .off = d->data_offset + e->pe * es + within },
                    .d = d,
                };
            }
            b += k;
            off += k;
            len -= k;
        }
    }
    vb->lpriv = pcs; /* freed by the core when vb is complete */
    __atomic_add_fetch(&vb->pending, (unsigned)n, __ATOMIC_ACQ_REL);
    for (size_t i = 0; i < n; i++) {
        struct vd_dev_bio *pc = &pcs[i];
        pc->priv = vb;
        pc->done = lpiece_done;
        if (vd_dev_submit(pc) == 0)
            continue;
        if (i == 0) {
            __atomic_sub_fetch(&vb->pending, (unsigned)n, __ATOMIC_ACQ_REL);
            vb->lpriv = NULL;
            free(pcs);
            return -EAGAIN; /* nothing started */
        }
        for (; i < n; i++) /* not started: the caller redoes it all */
            vd_vol_bio_piece_end(vb, -EAGAIN);
    }
    return 0;
}

const struct vd_layout_ops vd_linear_layout = {
    .name = "linear",
    .id = VD_LAYOUT_LINEAR,
    .meta_extents = 0,
    .io_beyond_size = true,
    .plan = linear_plan,
    .plan_extend = linear_plan_extend,
    .pread = linear_pread,
    .pwrite = linear_pwrite,
    .flush = linear_flush,
    .submit = linear_submit,
};
