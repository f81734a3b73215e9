/* vdlvm: volumes — create/remove/extend (admin thread) and I/O (any
 * thread).  Every read or write is split at extent boundaries and sent to
 * the device holding each extent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

void vd_vol_opts_init(struct vd_vol_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->layout = VD_LAYOUT_LINEAR;
    o->copies = 1;
}

/* Append to ops the MAP runs that give logical extents [le, le+count) of
 * leg `leg` of volume `vol` free physical extents, filling devices in pool
 * order.  Reads the state, changes nothing.  -ENOSPC if too few. */
static int alloc_extents_on(const vd_pool *p, uint32_t vol, uint32_t leg,
                            uint64_t le, uint64_t count, struct vd_opbuf *ops,
                            const bool *allowed)
{
    int r;

    for (uint32_t di = 0; di < p->ndevs && count; di++) {
        const struct vd_dev *d = &p->devs[di];
        if (!d->used || d->state != VD_DEV_OK || (allowed && !allowed[di]))
            continue;
        uint64_t pe = 0;
        while (pe < d->pe_count && count) {
            if (d->used[pe / 8] & (1u << (pe % 8))) {
                pe++;
                continue;
            }
            uint64_t n = 1;
            while (pe + n < d->pe_count && n < count &&
                   !(d->used[(pe + n) / 8] & (1u << ((pe + n) % 8))))
                n++;
            struct vd_op_map om = { .h.type = VD_OP_MAP };
            om.vol = vol;
            om.leg = leg;
            om.le_start = le;
            om.count = n;
            om.dev = di;
            om.pe_start = pe;
            if ((r = vd_opbuf_add(ops, &om, sizeof(om))) < 0)
                return r;
            le += n;
            count -= n;
            pe += n;
        }
    }
    return count ? -ENOSPC : 0;
}

/* Linear placement: the extents are spread over the usable devices in
 * proportion to their free space, so a volume larger than one device takes
 * about equal shares of equal devices (the research's 300 GB volume from
 * 150 GB on each of two 200 GB disks) and its I/O spreads over disks and
 * nodes.  Each device's share is taken first-fit, in device order, and the
 * shares are laid out one device after the other. */
static int alloc_extents(const vd_pool *p, uint32_t vol, uint32_t leg,
                         uint64_t le, uint64_t count, struct vd_opbuf *ops)
{
    uint64_t fr[VD_MAX_DEVS] = { 0 }, share[VD_MAX_DEVS] = { 0 };
    uint64_t total = 0, given = 0;
    int r;

    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        if (d->used && d->state == VD_DEV_OK)
            total += fr[i] = d->pe_count - d->used_count;
    }
    if (total < count)
        return -ENOSPC;
    for (uint32_t i = 0; i < p->ndevs && total; i++) {
        share[i] = (uint64_t)((unsigned __int128)count * fr[i] / total);
        given += share[i];
    }
    for (uint32_t i = 0; given < count && i < p->ndevs; i++)
        if (share[i] < fr[i]) {
            share[i]++;
            given++;
        }
    for (uint32_t i = 0; i < p->ndevs; i++) {
        bool only[VD_MAX_DEVS] = { false };
        if (!share[i])
            continue;
        only[i] = true;
        if ((r = alloc_extents_on(p, vol, leg, le, share[i], ops, only)) < 0)
            return r;
        le += share[i];
    }
    return 0;
}

static uint64_t free_on(const vd_pool *p, const bool *allowed)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used && p->devs[i].state == VD_DEV_OK && allowed[i])
            n += p->devs[i].pe_count - p->devs[i].used_count;
    return n;
}

/* Mirror placement: leg k gets the devices of one node (or, with
 * allow_same_node, one device) no other leg uses, choosing the group with
 * the most free extents that can hold the whole leg.  Fills leg_devs[k]
 * (per device: allowed) and returns 0, or logs what is missing. */
static int place_legs(const vd_pool *p, const char *name, uint32_t copies,
                      uint64_t need, int same_node, bool leg_devs[3][VD_MAX_DEVS])
{
    bool taken[VD_MAX_DEVS] = { false };

    for (uint32_t k = 0; k < copies; k++) {
        uint64_t best_free = 0;
        int best = -1;
        for (uint32_t i = 0; i < p->ndevs; i++) {
            bool grp[VD_MAX_DEVS] = { false };
            const struct vd_dev *d = &p->devs[i];
            if (!d->used || d->state != VD_DEV_OK || taken[i])
                continue;
            for (uint32_t j = 0; j < p->ndevs; j++)
                grp[j] = p->devs[j].used && !taken[j] &&
                         (same_node ? j == i : !strcmp(p->devs[j].node, d->node));
            /* with distinct nodes, a node some leg already uses is out */
            bool node_used = false;
            for (uint32_t j = 0; !same_node && j < p->ndevs; j++)
                if (taken[j] && !strcmp(p->devs[j].node, d->node))
                    node_used = true;
            if (node_used)
                continue;
            uint64_t f = free_on(p, grp);
            if (f >= need && f > best_free) {
                best_free = f;
                best = i;
                memcpy(leg_devs[k], grp, sizeof(grp));
            }
        }
        if (best < 0) {
            vd_log(VD_LOG_ERR, "volume '%s/%s': a mirror with %u copies needs %u "
                   "%s with %llu free extents each, the pool has %u; add devices%s",
                   p->name, name, copies, copies,
                   same_node ? "devices" : "distinct nodes",
                   (unsigned long long)need, k,
                   same_node ? "" : " on other nodes or use --allow-same-node");
            return -ENOSPC;
        }
        for (uint32_t j = 0; j < p->ndevs; j++)
            if (leg_devs[k][j])
                taken[j] = true;
    }
    return 0;
}

static uint64_t free_extents(const vd_pool *p)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used && p->devs[i].state == VD_DEV_OK)
            n += p->devs[i].pe_count - p->devs[i].used_count;
    return n;
}

static int no_space(const vd_pool *p, const char *name, uint64_t need)
{
    uint64_t have = free_extents(p);
    vd_log(VD_LOG_ERR, "volume '%s/%s': needs %llu extents (%llu MiB) but the "
           "pool has %llu free (%llu MiB); add devices or choose a smaller size",
           p->name, name, (unsigned long long)need,
           (unsigned long long)(need * (p->extent_size >> 20)),
           (unsigned long long)have,
           (unsigned long long)(have * (p->extent_size >> 20)));
    return -ENOSPC;
}

/* Interim: the layout registry (pool/layout.h) will own these names. */
static const char *const layout_names[] = {
    [VD_LAYOUT_LINEAR] = "linear",
    [VD_LAYOUT_MIRROR] = "mirror",
};

const char *vd_layout_name(uint32_t layout)
{
    if (layout < sizeof(layout_names) / sizeof(layout_names[0]) &&
        layout_names[layout])
        return layout_names[layout];
    return "unknown";
}

int vd_layout_from_name(const char *name, enum vd_layout *out)
{
    for (uint32_t i = 0; i < sizeof(layout_names) / sizeof(layout_names[0]); i++)
        if (layout_names[i] && !strcmp(name, layout_names[i])) {
            *out = (enum vd_layout)i;
            return 0;
        }
    return -EINVAL;
}

uint64_t vd_vol_size_max(const vd_pool *p)
{
    /* data extents * extent size fits 64 bits with one extent to spare (a
     * mirror's bitmap extent), so no size computation below can wrap */
    return (UINT64_MAX / p->extent_size - VD_MIRROR_LE0) * p->extent_size;
}

static int too_large(const vd_pool *p, const char *name, uint64_t size)
{
    char m[64];

    vd_size_exact(vd_vol_size_max(p), m, sizeof(m));
    vd_log(VD_LOG_ERR, "volume '%s/%s': size %llu is too large (at most %s)",
           p->name, name, (unsigned long long)size, m);
    return -EFBIG;
}

/* A mirror's bitmap is one extent: extent_size * 8 regions.  Checked before
 * the commit, so a create or extend beyond it changes nothing. */
static int bitmap_too_small(const vd_pool *p, const char *name, uint64_t size,
                            uint32_t region_shift)
{
    uint64_t nregions = vd_div_up(size, 1ull << region_shift);

    if (nregions <= p->extent_size * 8)
        return 0;
    vd_log(VD_LOG_ERR, "volume '%s/%s': size %llu needs %llu regions, more than "
           "the %llu the bitmap extent holds; use a larger --region-size",
           p->name, name, (unsigned long long)size,
           (unsigned long long)nregions,
           (unsigned long long)(p->extent_size * 8));
    return -EFBIG;
}

int vd_vol_create(vd_pool *p, const char *name, uint64_t size,
                  const struct vd_vol_opts *opts)
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
        vd_log(VD_LOG_ERR, "volume '%s/%s': invalid name; use 1-63 of "
               "[A-Za-z0-9_.-]", p->name, name ? name : "");
        return -EINVAL;
    }
    if (vd_vol_find(p, name)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': already exists", p->name, name);
        return -EEXIST;
    }
    if (size > vd_vol_size_max(p))
        return too_large(p, name, size);
    if (size == 0 || size % 512) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': size %llu is not a positive multiple "
               "of 512 bytes", p->name, name, (unsigned long long)size);
        return -EINVAL;
    }
    bool mirror = opts->layout == VD_LAYOUT_MIRROR;
    uint64_t rs = opts->region_size ? opts->region_size : (1ull << 20);
    if (mirror && (opts->copies < 2 || opts->copies > 3)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': a mirror has 2 or 3 copies, not %u",
               p->name, name, opts->copies);
        return -EINVAL;
    }
    if (mirror && ((rs & (rs - 1)) || rs < (64u << 10) || rs > p->extent_size)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': region size %llu must be a power of "
               "two from 64KiB to the extent size", p->name, name,
               (unsigned long long)rs);
        return -EINVAL;
    }
    if (!mirror && opts->layout != VD_LAYOUT_LINEAR) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': unknown layout", p->name, name);
        return -EINVAL;
    }
    if (mirror && (r = bitmap_too_small(p, name, vd_div_up(size, p->extent_size) *
                                                      p->extent_size,
                                        (uint32_t)__builtin_ctzll(rs))) < 0)
        return r;
    vd_admin_lock(p);
    for (uint32_t i = 0; i < p->nvols; i++)
        if (p->vols[i]->id >= id)
            id = p->vols[i]->id + 1;
    ov.id = id;
    ov.layout = opts->layout;
    ov.copies = mirror ? opts->copies : 1;
    uint64_t data_les = vd_div_up(size, p->extent_size);
    ov.le_count = data_les + (mirror ? VD_MIRROR_LE0 : 0);
    ov.size = data_les * p->extent_size;
    if (mirror)
        ov.flags = __builtin_ctzll(rs);
    vd_name_copy(ov.name, sizeof(ov.name), name);
    if (ov.le_count * ov.copies > free_extents(p)) {
        r = no_space(p, name, ov.le_count * ov.copies);
        goto out;
    }
    if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) < 0)
        goto out;
    if (mirror) {
        bool legs[3][VD_MAX_DEVS];
        memset(legs, 0, sizeof(legs));
        r = place_legs(p, name, ov.copies, ov.le_count, opts->allow_same_node, legs);
        for (uint32_t k = 0; r == 0 && k < ov.copies; k++)
            r = alloc_extents_on(p, id, k, 0, ov.le_count, &ops, legs[k]);
    } else {
        r = alloc_extents(p, id, 0, 0, ov.le_count, &ops);
    }
    if (r == -ENOSPC && !mirror)
        r = no_space(p, name, ov.le_count);
    if (r < 0)
        goto out;
    r = vd_md_commit(p, &ops);
    if (r == 0 && mirror) {
        struct vd_vol *v = vd_vol_find(p, name);
        r = vd_mirror_attach(v);
        if (r < 0) {
            /* the bitmap could not be initialised: remove again */
            struct vd_opbuf rm = { 0 };
            struct vd_op_vol orm = { .h.type = VD_OP_VOL_REMOVE, .id = id };
            if (vd_opbuf_add(&rm, &orm, sizeof(orm)) == 0)
                vd_md_commit(p, &rm);
            vd_opbuf_free(&rm);
        }
    }
    if (r == 0)
        vd_log(VD_LOG_INFO, "volume '%s/%s': created, %llu bytes", p->name, name,
               (unsigned long long)ov.size);
out:
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r;
}

static struct vd_vol *find_or_log(const vd_pool *p, const char *name)
{
    struct vd_vol *v = name ? vd_vol_find(p, name) : NULL;
    if (!v)
        vd_log(VD_LOG_ERR, "volume '%s/%s': not found; list volumes with "
               "'vdlvm vol list %s'", p->name, name ? name : "", p->name);
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
    if (v->open_count) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': in use (exported); delete its LUN "
               "first", p->name, name);
        return -EBUSY;
    }
    ov.id = v->id;
    if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) == 0)
        r = vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
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
    if (new_size > vd_vol_size_max(p))
        return too_large(p, name, new_size);
    if (new_size % 512) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': size %llu is not a multiple of 512",
               p->name, name, (unsigned long long)new_size);
        return -EINVAL;
    }
    uint64_t data_les = vd_div_up(new_size, p->extent_size);
    le_count = data_les + v->data_le0;
    if (data_les * p->extent_size <= v->size) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': new size %llu is not larger than the "
               "current %llu; volumes only grow",
               p->name, name, (unsigned long long)new_size,
               (unsigned long long)v->size);
        return -EINVAL;
    }
    if (v->layout == VD_LAYOUT_MIRROR &&
        (r = bitmap_too_small(p, name, data_les * p->extent_size,
                              v->flags & VD_VOLF_REGION_SHIFT_MASK)) < 0)
        return r;
    if ((le_count - v->le_count) * v->copies > free_extents(p))
        return no_space(p, name, (le_count - v->le_count) * v->copies);
    ov.id = v->id;
    ov.le_count = le_count;
    ov.size = data_les * p->extent_size;
    ov.copies = v->copies;
    ov.layout = v->layout;
    ov.flags = v->flags;
    vd_name_copy(ov.name, sizeof(ov.name), v->name);
    if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) < 0)
        goto out;
    for (uint32_t leg = 0; leg < v->copies && r == 0; leg++) {
        if (v->layout != VD_LAYOUT_MIRROR) {
            r = alloc_extents(p, v->id, leg, v->le_count, le_count - v->le_count,
                              &ops);
            continue;
        }
        /* A leg grows on its own node, never onto another leg's devices. */
        bool allowed[VD_MAX_DEVS] = { false };
        const char *node = p->devs[v->map[leg].dev].node;
        for (uint32_t i = 0; i < p->ndevs; i++)
            allowed[i] = !strcmp(p->devs[i].node, node);
        for (uint64_t le = 0; le < v->le_count; le++)
            for (uint32_t k = 0; k < v->copies; k++) {
                uint32_t dv = v->map[le * v->copies + k].dev;
                if (k != leg && dv != VD_NO_DEV)
                    allowed[dv] = false;
            }
        r = alloc_extents_on(p, v->id, leg, v->le_count, le_count - v->le_count,
                             &ops, allowed);
    }
    if (r == -ENOSPC)
        r = no_space(p, name, (le_count - v->le_count) * v->copies);
    if (r == 0)
        r = vd_md_commit(p, &ops);
    if (r == 0 && v->layout == VD_LAYOUT_MIRROR)
        r = vd_mirror_grow(v);
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
}

static int pool_vol_get_info_locked(const vd_pool *p, uint32_t i, struct vd_vol_info *info)
{
    if (i >= p->nvols)
        return -ENOENT;
    fill_info(p->vols[i], info);
    return 0;
}

static int vol_get_info_locked(const vd_pool *p, const char *name, struct vd_vol_info *info)
{
    struct vd_vol *v = vd_vol_find(p, name);
    if (!v)
        return -ENOENT;
    fill_info(v, info);
    return 0;
}

static int vol_get_runs_locked(const vd_pool *p, const char *name, struct vd_run **runs,
                    size_t *nruns)
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
                if (f->dev != e->dev || (e->dev != VD_NO_DEV && f->pe != e->pe + k))
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
            out[n++] = (struct vd_run){ .leg = leg, .le_start = le - v->data_le0,
                                        .count = k,
                                        .dev = e->dev, .pe_start = e->pe };
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
    struct vd_vol *v = find_or_log(p, name);
    if (!v) {
        errno = ENOENT;
        return NULL;
    }
    v->open_count++;
    return v;
}

void vd_vol_close(vd_vol *v)
{
    if (!v)
        return;
    vd_admin_lock(v->pool);
    if (v->open_count)
        v->open_count--;
    vd_admin_unlock(v->pool);
}

int vd_vol_remove(vd_pool *p, const char *name)
{
    int r;
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

int vd_vol_get_info(const vd_pool *p, const char *name, struct vd_vol_info *info)
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

/* ---- I/O ---------------------------------------------------------------- */
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
    if (off > v->size || len > v->size - off) {
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
                    vd_log(VD_LOG_ERR, "volume '%s/%s': device '%s' is "
                           "unavailable: %s", p->name, v->name, d->name,
                           d->state_msg);
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

static int vol_read(vd_vol *v, void *buf, size_t len, uint64_t off,
                    unsigned flags)
{
    if (v->layout == VD_LAYOUT_MIRROR)
        return vd_mirror_pread_flags(v, buf, len, off, flags);
    return vol_io(v, buf, len, off, false, flags);
}

static int vol_write(vd_vol *v, const void *buf, size_t len, uint64_t off,
                     unsigned flags)
{
    if (v->layout == VD_LAYOUT_MIRROR)
        return vd_mirror_pwrite(v, buf, len, off, flags);
    return vol_io(v, (void *)buf, len, off, true, flags);
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

    if (v->layout != VD_LAYOUT_MIRROR || e->dev == VD_NO_DEV)
        return NULL;
    d = &v->pool->devs[e->dev];
    *dev_off = d->data_offset + e->pe * v->pool->extent_size;
    return d;
}

/* A linear volume's flush covers exactly the devices its extents map: a
 * device of the pool that is unreachable but holds none of this volume's
 * extents does not fail it.  The set is taken under map_lock, the flushes
 * run without it (a remote flush may take the device's timeout, and an
 * extend waiting for map_lock must not stall every request behind it).  A
 * write that completed before the call was mapped when it ran, and
 * mappings only grow while the volume is open, so the set covers it. */
int vd_vol_flush(vd_vol *v)
{
    vd_pool *p = v->pool;
    bool mapped[VD_MAX_DEVS] = { false };
    int r = 0;

    if (v->layout == VD_LAYOUT_MIRROR)
        return vd_mirror_flush(v);
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
                vd_log(VD_LOG_ERR, "volume '%s/%s': flush: device '%s' is "
                       "unavailable: %s", p->name, v->name, d->name,
                       d->state_msg);
            r = -EIO;
            continue;
        }
        if (vd_dev_flush(d) < 0)
            r = -EIO;
    }
    return r;
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
    return 0;
}
