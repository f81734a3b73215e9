/* vdlvm: volumes — create/remove/extend (admin thread) and I/O (any
 * thread), the same for every layout: each step that depends on how the
 * volume maps its bytes goes through its layout's ops (pool/layout.h;
 * linear in pool/linear.c, mirror in replica/mirror.c).  Writes hold the
 * volume's write_lock shared, compare-and-write exclusive.
 *
 * Asynchronous I/O (vd_vol_submit; issue 14)
 *   A request is started on the event loop's thread (tgtd's main thread)
 *   and completed there later; nothing on that thread may wait.
 *   - Locks held until completion.  An async read or write holds the
 *     volume's map_lock shared, and a write also write_lock shared, from
 *     before the layout splits it until its last piece has ended: the
 *     extent mover sets a device's write hook (MOVE_BEGIN) and switches an
 *     extent (MOVE_END) under map_lock exclusive, and an extend changes
 *     the map under it, so a piece in flight must keep them out exactly as
 *     a synchronous request does (move.c's argument relies on it);
 *     compare-and-write takes write_lock exclusive for the same reason.
 *     Both are taken with try-locks (writer-preferring: a waiting mover or
 *     extend makes them fail): -EAGAIN, the caller goes synchronous on a
 *     worker, which waits there.  A flush holds map_lock only while the
 *     layout takes its device set (as linear_flush), not across the flush.
 *   - The thread that unlocks.  A pthread rwlock must be released by the
 *     thread that took it, but pieces end on drivers' threads (io_uring's
 *     reaper pass, the libiscsi event thread).  So the last piece only
 *     queues the request (g_vdone, leaf lock) and signals the async
 *     eventfd (pool/uring.c); vd_async_poll, on the event loop's thread,
 *     runs vd_vol_async_run: unlock, then the caller's done.  That is why
 *     vd_vol_submit refuses (-EAGAIN) unless an event loop registered
 *     (vd_async_fd) and must be called on that loop's thread: the same
 *     thread locks and unlocks, and may hold the same rwlock shared for
 *     many requests at once (only try-locks there, so never a deadlock
 *     against a waiting writer).
 *   - Draining.  While requests are in flight the loop's thread holds
 *     shared locks that only its own vd_async_poll releases.  If it then
 *     blocked on the admin lock (opening a volume) while another thread
 *     held it and waited for map_lock exclusive (an extend, a move's
 *     apply), neither would move.  So before anything on that thread
 *     that may block on the admin lock or a volume lock it calls
 *     vd_async_drain (tgt's bs_open and bs_close do), which polls until
 *     g_ainflight is 0.
 *   - Flush generations (dev.c's protocol): an async flush piece notes
 *     wgen when started and, on success, raises d->flushed_gen to it under
 *     flush_lock; it never touches flushing / flush_count / flush_cond,
 *     which pair a synchronous vd_dev_flush with its waiters.  Devices
 *     with nothing written since their last good flush are skipped.
 *   - Layouts without submit (mirror, and thin or snapshot views above
 *     any layout) stay synchronous: -EAGAIN.
 *   Ownership: vb's pool fields are vd_vol_submit's until it returns 0,
 *   then the pieces' (pending, result: atomics) until the last one queues
 *   it, then vd_vol_async_run's; g_vdone under g_vdone_lock; g_ainflight
 *   atomic, changed on the loop's thread only. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"
#include "snap_int.h"
#include "tier.h"
#include "uring.h"

void vd_vol_opts_init(struct vd_vol_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->layout = VD_LAYOUT_LINEAR;
    o->copies = 1;
}

uint64_t vd_vol_size_max(const vd_pool *p)
{
    /* data extents * extent size fits 64 bits with one extent to spare (a
     * layout's meta extent, the mirror's bitmap), so no size computation
     * below can wrap */
    return (UINT64_MAX / p->extent_size - VD_LAYOUT_MAX_META_LE) *
           p->extent_size;
}

static int too_large(const vd_pool *p, const char *name, uint64_t size)
{
    char m[64];

    vd_size_exact(vd_vol_size_max(p), m, sizeof(m));
    vd_log(VD_LOG_ERR, "volume '%s/%s': size %llu is too large (at most %s)",
           p->name, name, (unsigned long long)size, m);
    return -EFBIG;
}

/* The name is checked under the admin lock, in the same hold as the
 * commit: two creates of one name racing (two admin threads: vdlvm's and
 * a control socket's) cannot both pass the check. */
int vd_vol_create_ext(vd_pool *p, const char *name, uint64_t size,
                      const struct vd_vol_opts *opts,
                      int (*more)(vd_pool *, const struct vd_op_vol *,
                                  struct vd_opbuf *, void *),
                      void *arg, struct vd_vol **opened)
{
    struct vd_vol_opts def;
    struct vd_opbuf ops = { 0 };
    struct vd_op_vol ov = { .h.type = VD_OP_VOL_CREATE };
    uint32_t id = 1;
    int r;

    if (!opts) {
        vd_vol_opts_init(&def);
        opts = &def;
    }
    if (!name || !vd_name_is_valid(name)) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': invalid name; use 1-63 of "
               "[A-Za-z0-9_.-]",
               p->name, name ? name : "");
        return -EINVAL;
    }
    if (size > vd_vol_size_max(p))
        return too_large(p, name, size);
    if (size == 0 || size % 512) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': size %llu is not a positive multiple "
               "of 512 bytes",
               p->name, name, (unsigned long long)size);
        return -EINVAL;
    }
    /* The layouts: the registry resolves opts (e.g. thin on linear). */
    const struct vd_layout_ops *lops, *up;
    if (vd_layout_resolve(opts, &lops, &up) < 0) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': unknown layout", p->name, name);
        return -EINVAL;
    }
    uint64_t data_les = vd_div_up(size, p->extent_size);
    ov.layout = lops->id;
    ov.copies = 1;
    ov.le_count = data_les + lops->meta_extents;
    ov.size = data_les * p->extent_size;
    vd_name_copy(ov.name, sizeof(ov.name), name);
    if (lops->check && (r = lops->check(p, name, opts, &ov)) < 0)
        return r;
    if (up) {
        ov.le_count = lops->meta_extents; /* the data space starts empty */
        if (up->check && (r = up->check(p, name, opts, &ov)) < 0)
            return r;
    }
    if (g_vol_create_test_hook) /* tests: another create may run here */
        g_vol_create_test_hook(name);
    vd_admin_lock(p);
    if (vd_vol_find(p, name) || vd_clone_exists_locked(p, name)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': already exists", p->name, name);
        r = -EEXIST;
        goto out;
    }
    for (uint32_t i = 0; i < p->nvols; i++)
        if (p->vols[i]->id >= id)
            id = p->vols[i]->id + 1;
    ov.id = id;
    if (ov.le_count * ov.copies > vd_extent_free_count(p, NULL)) {
        r = vd_extent_no_space(p, name, ov.le_count * ov.copies);
        goto out;
    }
    if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) < 0)
        goto out;
    if ((r = lops->plan(p, name, opts, &ov, &ops)) < 0)
        goto out;
    if (up && (r = up->plan(p, name, opts, &ov, &ops)) < 0)
        goto out;
    if (more && (r = more(p, &ov, &ops, arg)) < 0)
        goto out;
    r = vd_md_commit(p, &ops);
    if (r == 0) {
        struct vd_vol *v = vd_vol_find(p, name);
        r = vd_vol_ctr(v);
        if (r < 0) {
            /* the layout could not start (the mirror's bitmap): remove again */
            struct vd_opbuf rm = { 0 };
            struct vd_op_vol orm = { .h.type = VD_OP_VOL_REMOVE, .id = id };
            vd_vol_dtr(v);
            if (vd_opbuf_add(&rm, &orm, sizeof(orm)) == 0)
                vd_md_commit(p, &rm);
            vd_opbuf_free(&rm);
        }
    }
    if (r == 0)
        vd_log(VD_LOG_INFO, "volume '%s/%s': created, %llu bytes", p->name,
               name, (unsigned long long)ov.size);
    if (r == 0 && opened) { /* open in the same hold: no one comes first */
        *opened = vd_vol_find(p, name);
        (*opened)->open_count++;
    }
out:
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r;
}

int vd_vol_create(vd_pool *p, const char *name, uint64_t size,
                  const struct vd_vol_opts *opts)
{
    return vd_vol_create_ext(p, name, size, opts, NULL, NULL, NULL);
}

void (*g_vol_create_test_hook)(const char *name);

static struct vd_vol *find_or_log(const vd_pool *p, const char *name)
{
    struct vd_vol *v = name ? vd_vol_find(p, name) : NULL;
    if (!v)
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not found; list volumes with "
               "'vdlvm vol list %s'",
               p->name, name ? name : "", p->name);
    return v;
}

static int vol_remove_locked(vd_pool *p, const char *name)
{
    struct vd_vol *v = find_or_log(p, name);
    struct vd_opbuf ops = { 0 };
    struct vd_op_vol ov = { .h.type = VD_OP_VOL_REMOVE };
    int r;

    if (!v)
        return -ENOENT;
    int nc = vd_thin_clone_count(v); /* their views count as opens */
    if (nc) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': holds the chunks of %d clone(s); remove "
               "them first ('vdlvm vol list %s' shows their origin)",
               p->name, name, nc, p->name);
        return -EBUSY;
    }
    if (vd_vol_is_importing(v)) {
        if (!v->open_count) /* its importer died: the volume and the mark */
            return vd_vol_import_abort(p, name);
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': being imported ('vdlvm vol import' has not "
               "finished); an import that fails or is stopped removes it",
               p->name, name);
        return -EBUSY;
    }
    if (v->open_count) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': in use (exported); delete its LUN "
               "first",
               p->name, name);
        return -EBUSY;
    }
    int ns = vd_thin_snap_count(v);
    if (ns) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': has %d snapshot(s); remove them first "
               "('vdlvm snap list %s/%s', 'vdlvm snap remove')",
               p->name, name, ns, p->name, name);
        return -EBUSY;
    }
    ov.id = v->id;
    if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) == 0)
        r = vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
    if (r == 0)
        vd_pool_check_thresholds(p);
    return r;
}

static int vol_extend_locked(vd_pool *p, const char *name, uint64_t new_size)
{
    struct vd_vol *v = find_or_log(p, name);
    struct vd_opbuf ops = { 0 };
    struct vd_op_vol ov = { .h.type = VD_OP_VOL_RESIZE };
    uint64_t le_count;
    int r;

    if (!v)
        return -ENOENT;
    if (vd_vol_is_importing(v)) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': being imported ('vdlvm vol import' has not "
               "finished); extend it when the import has ended",
               p->name, name);
        return -EBUSY;
    }
    if (new_size > vd_vol_size_max(p))
        return too_large(p, name, new_size);
    if (new_size % 512) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': size %llu is not a multiple of 512",
               p->name, name, (unsigned long long)new_size);
        return -EINVAL;
    }
    uint64_t data_les = vd_div_up(new_size, p->extent_size);
    /* a stacked (thin) volume's data space grows on demand, not here */
    le_count = v->upper ? v->le_count : data_les + v->data_le0;
    if (data_les * p->extent_size <= v->size) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': new size %llu is not larger than the "
               "current %llu; volumes only grow",
               p->name, name, (unsigned long long)new_size,
               (unsigned long long)v->size);
        return -EINVAL;
    }
    if (v->lops->check_extend &&
        (r = v->lops->check_extend(v, data_les * p->extent_size)) < 0)
        return r;
    if ((le_count - v->le_count) * v->copies > vd_extent_free_count(p, NULL))
        return vd_extent_no_space(p, name,
                                  (le_count - v->le_count) * v->copies);
    ov.id = v->id;
    ov.le_count = le_count;
    ov.size = data_les * p->extent_size;
    ov.copies = v->copies;
    ov.layout = v->layout;
    ov.flags = v->flags;
    vd_name_copy(ov.name, sizeof(ov.name), v->name);
    if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) < 0)
        goto out;
    r = v->lops->plan_extend(v, le_count, &ops);
    if (r == -ENOSPC)
        r = vd_extent_no_space(p, name, (le_count - v->le_count) * v->copies);
    if (r == 0)
        r = vd_md_commit(p, &ops);
    if (r == 0 && v->lops->grow)
        r = v->lops->grow(v);
    if (r == 0 && v->upper && v->upper->grow)
        r = v->upper->grow(v);
    if (r == 0)
        vd_pool_check_thresholds(p);
out:
    vd_opbuf_free(&ops);
    return r;
}

int vd_pool_vol_count(const vd_pool *p)
{
    return (int)__atomic_load_n(&p->nvols, __ATOMIC_ACQUIRE);
}

static void fill_info(const struct vd_vol *v, struct vd_vol_info *info)
{
    memset(info, 0, sizeof(*info));
    strcpy(info->name, v->name);
    info->size = v->size;
    info->layout = v->layout;
    info->copies = v->copies;
    info->open_count = v->open_count;
    if (v->upper) {
        struct vd_vol_status st = { 0 };
        v->upper->status((struct vd_vol *)v, &st);
        info->thin = st.thin;
        info->chunk_size = st.chunk_size;
    }
}

int vd_vol_ctr(struct vd_vol *v)
{
    int r = 0;
    if ((r = vd_heat_alloc(v)) < 0) /* tiering: pool/heat.c */
        return r;
    if (v->lops->ctr && (r = v->lops->ctr(v)) < 0)
        return r;
    if (v->upper && v->upper->ctr && (r = v->upper->ctr(v)) < 0) {
        if (v->lops->dtr)
            v->lops->dtr(v);
    }
    return r;
}

void vd_vol_dtr(struct vd_vol *v)
{
    if (v->upper && v->upper->dtr)
        v->upper->dtr(v);
    if (v->lops && v->lops->dtr)
        v->lops->dtr(v);
    vd_heat_free(v); /* tiering: pool/heat.c */
}

uint64_t vd_vol_allocated(struct vd_vol *v)
{
    uint64_t mapped = 0, es = v->pool->extent_size;
    if (v->upper) {
        struct vd_vol_status st = { 0 };
        v->upper->status(v, &st);
        return st.allocated;
    }
    pthread_rwlock_rdlock(&v->map_lock);
    for (uint64_t le = v->data_le0; le < v->le_count; le++)
        mapped += v->map[le * v->copies].dev != VD_NO_DEV;
    pthread_rwlock_unlock(&v->map_lock);
    return mapped * es < v->size ? mapped * es : v->size;
}

static int pool_vol_get_info_locked(const vd_pool *p, uint32_t i,
                                    struct vd_vol_info *info)
{
    if (i >= p->nvols)
        return -ENOENT;
    fill_info(p->vols[i], info);
    return 0;
}

static int vol_get_info_locked(const vd_pool *p, const char *name,
                               struct vd_vol_info *info)
{
    char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
    struct vd_snap_info *si = NULL;
    size_t n = 0;

    if (name && strchr(name, '@')) {
        /* a snapshot: its volume's info, its name and size */
        struct vd_vol *o;
        if (vd_snap_split(name, vol, snap) <= 0 || !(o = vd_vol_find(p, vol)) ||
            vd_thin_snap_list(o, &si, &n) < 0)
            return -ENOENT;
        int r = -ENOENT;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(si[i].name, snap)) {
                fill_info(o, info);
                snprintf(info->name, sizeof(info->name), "%s", name);
                info->size = si[i].size;
                r = 0;
            }
        free(si);
        return r;
    }
    struct vd_vol *v = vd_vol_find(p, name);
    if (!v) {
        /* a clone: its family's info (thin, chunk size, layout), its name,
         * size and exported state (pool/snap.c) */
        return vd_clone_vol_info_locked((vd_pool *)p, name, info, fill_info);
    }
    fill_info(v, info);
    return 0;
}

static int vol_get_status_locked(const vd_pool *p, const char *name,
                                 struct vd_vol_status *st)
{
    struct vd_vol *v = vd_vol_find(p, name);

    if (!v)
        return -ENOENT;
    memset(st, 0, sizeof(*st));
    snprintf(st->layout, sizeof(st->layout), "%s", v->lops->name);
    st->size = v->size;
    st->copies = st->copies_insync = v->copies;
    if (v->lops->status)
        v->lops->status(v, st);
    /* the upper layout's allocation replaces the extents' count */
    if (v->upper)
        v->upper->status(v, st);
    else
        st->allocated = vd_vol_allocated(v);
    st->degraded = st->copies_insync < st->copies;
    return 0;
}

int vd_vol_get_status(const vd_pool *p, const char *name,
                      struct vd_vol_status *st)
{
    int r;
    vd_admin_lock((vd_pool *)p);
    r = vol_get_status_locked(p, name, st);
    vd_admin_unlock((vd_pool *)p);
    return r;
}

static int vol_get_runs_locked(const vd_pool *p, const char *name,
                               struct vd_run **runs, size_t *nruns)
{
    struct vd_vol *v = vd_vol_find(p, name);
    struct vd_run *out = NULL;
    size_t n = 0, cap = 0;

    if (!v)
        return -ENOENT;
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint64_t le = v->data_le0; /* a mirror's bitmap extent is not data */
        while (le < v->le_count) {
            const struct vd_pe *e = &v->map[le * v->copies + leg];
            uint64_t k = 1;
            while (le + k < v->le_count) {
                const struct vd_pe *f = &v->map[(le + k) * v->copies + leg];
                if (f->dev != e->dev ||
                    (e->dev != VD_NO_DEV && f->pe != e->pe + k))
                    break;
                k++;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                struct vd_run *nr = realloc(out, cap * sizeof(*nr));
                if (!nr) {
                    free(out);
                    return -ENOMEM;
                }
                out = nr;
            }
            out[n++] = (struct vd_run){ .leg = leg,
                                        .le_start = le - v->data_le0,
                                        .count = k,
                                        .dev = e->dev,
                                        .pe_start = e->pe };
            le += k;
        }
    }
    *runs = out;
    *nruns = n;
    return 0;
}

/* ---- open/close --------------------------------------------------------- */
static vd_vol *vol_open_locked(vd_pool *p, const char *name)
{
    if (name && strchr(name, '@'))
        return vd_snap_view_open(p, name); /* read-only (pool/snap.c) */
    if (name && !vd_vol_find(p, name) && vd_clone_exists_locked(p, name))
        return vd_clone_view_open(p, name); /* a clone (pool/snap.c) */
    struct vd_vol *v = find_or_log(p, name);
    if (!v) {
        errno = ENOENT;
        return NULL;
    }
    if (vd_vol_is_importing(v)) { /* its importer alone has it open */
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': being imported ('vdlvm vol import' has not "
               "finished); it cannot be opened until the import ends",
               p->name, name);
        errno = EBUSY;
        return NULL;
    }
    v->open_count++;
    return v;
}

void vd_vol_close(vd_vol *v)
{
    if (!v)
        return;
    if (vd_snap_is_view(v)) {
        vd_snap_view_close(v);
        return;
    }
    vd_admin_lock(v->pool);
    if (v->open_count)
        v->open_count--;
    vd_admin_unlock(v->pool);
}

int vd_vol_remove(vd_pool *p, const char *name)
{
    int r = vd_clone_remove_if(p, name); /* 1: no clone of that name */
    if (r <= 0)
        return r;
    vd_admin_lock(p);
    r = vol_remove_locked(p, name);
    vd_admin_unlock(p);
    return r;
}

int vd_vol_extend(vd_pool *p, const char *name, uint64_t new_size)
{
    int r;
    vd_admin_lock(p);
    r = vol_extend_locked(p, name, new_size);
    vd_admin_unlock(p);
    return r;
}

int vd_pool_vol_get_info(const vd_pool *p, uint32_t i, struct vd_vol_info *info)
{
    int r;
    vd_admin_lock((vd_pool *)p);
    r = pool_vol_get_info_locked(p, i, info);
    vd_admin_unlock((vd_pool *)p);
    return r;
}

int vd_vol_get_info(const vd_pool *p, const char *name,
                    struct vd_vol_info *info)
{
    int r;
    vd_admin_lock((vd_pool *)p);
    r = vol_get_info_locked(p, name, info);
    vd_admin_unlock((vd_pool *)p);
    return r;
}

int vd_vol_get_runs(const vd_pool *p, const char *name, struct vd_run **runs,
                    size_t *nruns)
{
    int r;
    vd_admin_lock((vd_pool *)p);
    r = vol_get_runs_locked(p, name, runs, nruns);
    vd_admin_unlock((vd_pool *)p);
    return r;
}

vd_vol *vd_vol_open(vd_pool *p, const char *name)
{
    vd_vol *r;
    vd_admin_lock(p);
    r = vol_open_locked(p, name);
    vd_admin_unlock(p);
    return r;
}

uint64_t vd_vol_size(const vd_vol *v)
{
    return __atomic_load_n(&v->size, __ATOMIC_ACQUIRE);
}

const char *vd_vol_name(const vd_vol *v)
{
    return v->name;
}

/* ---- I/O: through the volume's layout ------------------------------------ */
static int vol_read(vd_vol *v, void *buf, size_t len, uint64_t off,
                    unsigned flags)
{
    vd_heat_count(v, off, len, false); /* tiering: pool/heat.c */
    if (v->upper)
        return v->upper->pread(v, buf, len, off, flags);
    return v->lops->pread(v, buf, len, off, flags);
}

static int vol_write(vd_vol *v, const void *buf, size_t len, uint64_t off,
                     unsigned flags)
{
    vd_heat_count(v, off, len, true); /* tiering: pool/heat.c */
    if (v->upper)
        return v->upper->pwrite(v, buf, len, off, flags);
    return v->lops->pwrite(v, buf, len, off, flags);
}

int vd_vol_pread(vd_vol *v, void *buf, size_t len, uint64_t off)
{
    return vol_read(v, buf, len, off, 0);
}

int vd_vol_pread_flags(vd_vol *v, void *buf, size_t len, uint64_t off,
                       unsigned flags)
{
    return vol_read(v, buf, len, off, flags & VD_IO_NOWAIT);
}

int vd_vol_pwrite(vd_vol *v, const void *buf, size_t len, uint64_t off,
                  unsigned flags)
{
    int r;
    if (flags & VD_IO_NOWAIT) {
        if (pthread_rwlock_tryrdlock(&v->write_lock))
            return -EAGAIN;
    } else {
        pthread_rwlock_rdlock(&v->write_lock);
    }
    r = vol_write(v, buf, len, off, flags);
    pthread_rwlock_unlock(&v->write_lock);
    return r;
}

struct vd_dev *vd_leg_locate(struct vd_vol *v, uint32_t leg, uint64_t off,
                             uint64_t *dev_off)
{
    uint64_t es = v->pool->extent_size, le = off / es + v->data_le0;
    const struct vd_pe *e;
    struct vd_dev *d;

    if (le >= v->le_count)
        return NULL;
    e = &v->map[le * v->copies + leg];
    if (e->dev == VD_NO_DEV)
        return NULL;
    d = &v->pool->devs[e->dev];
    *dev_off = d->data_offset + e->pe * es + off % es;
    return d;
}

struct vd_dev *vd_leg_bitmap_locate(struct vd_vol *v, uint32_t leg,
                                    uint64_t *dev_off)
{
    const struct vd_pe *e = &v->map[leg];
    struct vd_dev *d;

    if (!v->data_le0 || e->dev == VD_NO_DEV)
        return NULL;
    d = &v->pool->devs[e->dev];
    *dev_off = d->data_offset + e->pe * v->pool->extent_size;
    return d;
}

/* See the layout's flush (pool/linear.c, replica/mirror.c). */
int vd_vol_flush(vd_vol *v)
{
    return v->upper ? v->upper->flush(v) : v->lops->flush(v);
}

int vd_vol_compare_and_write(vd_vol *v, const void *cmp, const void *wr,
                             size_t len, uint64_t off, uint64_t *miscompare_off)
{
    char *cur = malloc(len ? len : 1);
    int r;

    if (!cur)
        return -ENOMEM;
    pthread_rwlock_wrlock(&v->write_lock);
    r = vol_read(v, cur, len, off, 0);
    if (r == 0) {
        for (size_t i = 0; i < len; i++)
            if (cur[i] != ((const char *)cmp)[i]) {
                *miscompare_off = i;
                r = 1;
                break;
            }
    }
    if (r == 0)
        r = vol_write(v, wr, len, off, 0);
    pthread_rwlock_unlock(&v->write_lock);
    free(cur);
    return r;
}

int vd_vol_lba_status(vd_vol *v, uint64_t off, uint64_t *len, int *mapped)
{
    uint64_t es = v->pool->extent_size;
    int r = 0;

    if (v->upper && v->upper->lba_status)
        return v->upper->lba_status(v, off, len, mapped);
    if (v->lops->lba_status)
        return v->lops->lba_status(v, off, len, mapped);

    pthread_rwlock_rdlock(&v->map_lock);
    if (off >= v->size) {
        r = -ERANGE;
        goto out;
    }
    uint64_t le = off / es + v->data_le0;
    int m = v->map[le * v->copies].dev != VD_NO_DEV;
    uint64_t end = le + 1;
    while (end < v->le_count && (v->map[end * v->copies].dev != VD_NO_DEV) == m)
        end++;
    end -= v->data_le0;
    *mapped = m;
    *len = (end * es < v->size ? end * es : v->size) - off;
out:
    pthread_rwlock_unlock(&v->map_lock);
    return r;
}

int vd_vol_discard(vd_vol *v, uint64_t off, uint64_t len)
{
    if (off > vd_vol_size(v) || len > vd_vol_size(v) - off)
        return -ERANGE;
    if (v->upper)
        return v->upper->discard ? v->upper->discard(v, off, len) : 0;
    return v->lops->discard ? v->lops->discard(v, off, len) : 0;
}

/* ---- asynchronous I/O (the design is in the header comment) -------------- */
#define VB_MAP   1u /* map_lock held shared */
#define VB_WRITE 2u /* write_lock held shared */

static pthread_mutex_t g_vdone_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vd_vol_bio *g_vdone;                  /* under g_vdone_lock */
static struct vd_vol_bio **g_vdone_tail = &g_vdone; /* under g_vdone_lock */
static unsigned g_ainflight;                        /* atomic */

unsigned vd_async_inflight(void)
{
    return __atomic_load_n(&g_ainflight, __ATOMIC_ACQUIRE);
}

static void vb_unlock(struct vd_vol_bio *vb)
{
    vd_vol *v = vb->vol;

    if (vb->locks & VB_MAP)
        pthread_rwlock_unlock(&v->map_lock);
    if (vb->locks & VB_WRITE)
        pthread_rwlock_unlock(&v->write_lock);
    vb->locks = 0;
}

void vd_vol_bio_piece_end(struct vd_vol_bio *vb, int result)
{
    if (result < 0) {
        int zero = 0;
        __atomic_compare_exchange_n(&vb->result, &zero, result, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    if (__atomic_sub_fetch(&vb->pending, 1, __ATOMIC_ACQ_REL))
        return;
    pthread_mutex_lock(&g_vdone_lock);
    vb->next = NULL;
    *g_vdone_tail = vb;
    g_vdone_tail = &vb->next;
    pthread_mutex_unlock(&g_vdone_lock);
    vd_async_signal();
}

void vd_vol_async_run(void)
{
    struct vd_vol_bio *list;

    pthread_mutex_lock(&g_vdone_lock);
    list = g_vdone;
    g_vdone = NULL;
    g_vdone_tail = &g_vdone;
    pthread_mutex_unlock(&g_vdone_lock);
    while (list) {
        struct vd_vol_bio *vb = list;
        list = vb->next;
        vb_unlock(vb);
        free(vb->lpriv);
        vb->lpriv = NULL;
        __atomic_sub_fetch(&g_ainflight, 1, __ATOMIC_ACQ_REL);
        vb->done(vb, __atomic_load_n(&vb->result, __ATOMIC_ACQUIRE));
    }
}

int vd_vol_submit(vd_vol *v, struct vd_vol_bio *vb)
{
    int r;

    if (!vd_async_external() || v->upper || !v->lops->submit ||
        vd_snap_is_view(v) || vb->op < VD_VOL_READ || vb->op > VD_VOL_FLUSH)
        return -EAGAIN;
    vb->vol = v;
    vb->locks = 0;
    vb->result = 0;
    vb->pending = 1; /* ours, dropped below */
    vb->lpriv = NULL;
    vb->next = NULL;
    if (vb->op == VD_VOL_WRITE) {
        if (pthread_rwlock_tryrdlock(&v->write_lock))
            return -EAGAIN;
        vb->locks |= VB_WRITE;
    }
    if (pthread_rwlock_tryrdlock(&v->map_lock)) {
        vb_unlock(vb);
        return -EAGAIN;
    }
    vb->locks |= VB_MAP;
    r = v->lops->submit(v, vb);
    if (r < 0) {
        vb_unlock(vb);
        return r;
    }
    if (vb->op != VD_VOL_FLUSH)
        vd_heat_count(v, vb->off, vb->len, vb->op == VD_VOL_WRITE);
    else if (vb->locks & VB_MAP) { /* the device set is taken */
        pthread_rwlock_unlock(&v->map_lock);
        vb->locks &= ~VB_MAP;
    }
    __atomic_add_fetch(&g_ainflight, 1, __ATOMIC_ACQ_REL);
    vd_vol_bio_piece_end(vb, 0);
    return 0;
}

void vd_async_drain(void)
{
    int fd = vd_async_external() ? vd_async_fd() : -1;

    while (vd_async_inflight()) {
        if (fd >= 0) {
            struct pollfd pfd = { .fd = fd, .events = POLLIN };
            poll(&pfd, 1, 100);
        }
        vd_async_poll();
    }
}
