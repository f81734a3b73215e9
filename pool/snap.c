/* vdlvm: snapshots of thin volumes — no chain to walk.
 *
 * Design.  A thin volume with a family map (VD_OP_STACK flag THIN_FAM,
 * every thin volume created since snapshots exist, docs/format.md
 * section 8) records, for each chunk,
 * the virtual chunk it holds AND the generation it was written in (8-byte
 * entries in thin's per-extent reverse map, same two slots, crc and
 * sequence numbers; pool/thin.c).  Generations form a tree kept in the
 * pool's metadata log (records 14-18, pool/layout.h):
 *   - the volume (the "head") writes in one generation, t->gen;
 *   - `snap create` freezes it: the snapshot IS that generation, and the
 *     head moves to a new child generation (one SNAP_CREATE record);
 *   - `vol revert` gives the head a new generation whose parent is the
 *     snapshot's (one SNAP_REVERT record);
 *   - `snap remove` drops the member (SNAP_REMOVE); generations no member
 *     descends from are pruned, deterministically, on apply and replay.
 * A member (head or snapshot) sees, for each virtual chunk, the chunk of
 * its nearest ancestor generation that has one.  That rule is evaluated
 * once, at open, into each member's own forward map in RAM (leaves of
 * 1024 entries, as thin's); afterwards a read of any snapshot, at any
 * depth, is one lookup, as fast as the volume itself.  Snapshot create
 * copies the head's map in RAM (pointer leaves; O(allocated chunks),
 * independent of the provisioned size) and commits one record.
 *
 * Reference counts: sref[chunk] = the snapshots whose map names it (the
 * head's reference is its forward map).  RAM only: rebuilt at every open
 * from the members' maps, so no count on disk can drift from the maps.
 *   - A write to a chunk with sref > 0 copies it (COW): a new chunk
 *     written whole (the old chunk's bytes + the new ones), then thin's
 *     group commit (flush, map block with (vc, head gen), flush), then the
 *     acknowledgement.  Until the commit the forward entry is pending and
 *     reads are served from the old chunk (struct tcow); other writers of
 *     that chunk wait.  The old chunk is never written, and is freed after
 *     the commit only if no snapshot still names it.
 *   - A write to a chunk with sref 0 (the head's alone) goes in place, as
 *     in thin; a first write allocates, as in thin, in the head's gen.
 *   - snap remove: sref-- for each chunk of its map; a chunk at 0 that the
 *     head does not map is released (written free by the next group
 *     commit, reusable after it).
 *   - revert: the head's map becomes a copy of the snapshot's; chunks the
 *     head held alone are released.
 *   - discard on a volume with snapshots writes zeroes (COW where shared)
 *     instead of freeing: freeing would let an older generation's entry
 *     for the same virtual chunk show through after a reopen.
 *
 * Crash argument (write-ahead order everywhere; a reopen recomputes what
 * RAM holds from two durable sources: the record log and the map blocks):
 *   - snap create: the volume's writes are quiesced (io_lock exclusive:
 *     none in flight, none pending), the lower layout is flushed (every
 *     acknowledged write durable in the chunks the snapshot keeps), then
 *     the record commits.  Crash before the record: no snapshot, the head
 *     is unchanged.  After it: the snapshot's generation holds exactly the
 *     head's durable entries (nothing of the new generation exists yet).
 *     So "every write acknowledged before the command, none started after
 *     it returned" holds, also under load: writes that start meanwhile
 *     wait on io_lock (NOWAIT ones get -EAGAIN and are retried).
 *   - COW: crash before the map block: the new chunk is named by no entry
 *     (or by a stale free one): free at reopen; the head sees the old
 *     chunk (the write was not acknowledged).  After: the head's nearest
 *     generation has the new chunk, the snapshot's does not include the
 *     head's generation: each sees its own.  A torn map write: thin's two
 *     slots keep the previous block.
 *   - remove / revert: crash after the record but before the frees are
 *     written: the chunks are seen by no member at reopen (their
 *     generation is pruned or no member's nearest), so they are reclaimed
 *     then (counted, logged, and reported by `pool check`).
 *   - duplicate entries for one (virtual chunk, generation) after a torn
 *     commit: the newer map block wins in every member alike.
 *   A chunk is therefore never freed while a member's durable view names
 *   it, and never named by a member that did not write or inherit it.
 *
 * Concurrency (locks: thin.c's header; order io_lock > admin lock > thin
 * lock): create, remove and revert hold the volume's io_lock exclusive for
 * the metadata commit only (no data copied), so writes pause for one
 * record commit plus one flush.  Snapshot reads take io_lock shared like
 * the volume's, so a snapshot is never removed under a read (and remove
 * is refused while it is open: opens, under thin's lock).  sref, the
 * member maps and the COW list are under thin's lock; md_apply changes the
 * maps only while the caller holds io_lock exclusive.
 *
 * Owned here: views.  vd_vol_open(p, "VOL@SNAP") returns a private struct
 * vd_vol (not in p->vols) whose upper layout is snapview_layout: pread
 * goes to vd_thin_snap_pread, writes and discards fail with -EROFS.  It
 * holds an open count on the volume (so the volume is not removed) and on
 * the snapshot; vd_vol_close frees it.  Constant after open; the admin
 * lock guards open and close.
 *
 * Clones (record 19): see "clones" below.
 *
 * Limits (first version): a reopen
 * costs O(members x allocated chunks); each snapshot's map costs 4 bytes
 * per virtual chunk of its touched leaves (not shared between snapshots).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"
#include "snap_int.h"

struct snapview {
    struct vd_vol *vol; /* the snapshot's volume */
    void *h;            /* the snapshot (thin.c), open */
};

/* ---- names ----------------------------------------------------------------- */
static bool snap_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > VD_SNAP_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
              c == '+'))
            return false;
    }
    return true;
}

int vd_snap_split(const char *full, char *vol, char *snap)
{
    const char *at = strchr(full, '@');
    if (!at)
        return 0;
    size_t vl = (size_t)(at - full);
    if (!vl || vl > VD_NAME_MAX || !snap_name_ok(at + 1)) {
        vd_log(VD_LOG_ERR,
               "'%s': a snapshot is named VOLUME@SNAPSHOT, the snapshot "
               "1-%d characters of A-Z a-z 0-9 . _ - +",
               full, VD_SNAP_NAME_MAX);
        return -EINVAL;
    }
    memcpy(vol, full, vl);
    vol[vl] = 0;
    snprintf(snap, VD_NAME_MAX + 1, "%s", at + 1);
    return 1;
}

int vd_snap_name_is_valid(const char *name)
{
    const char *at = strchr(name, '@');
    char vol[VD_NAME_MAX + 1];
    size_t vl = at ? (size_t)(at - name) : 0;
    if (!at || !vl || vl > VD_NAME_MAX || !snap_name_ok(at + 1))
        return 0;
    memcpy(vol, name, vl);
    vol[vl] = 0;
    return vd_name_is_valid(vol);
}

static struct vd_vol *find_thin(vd_pool *p, const char *vol)
{
    struct vd_vol *v = vd_vol_find(p, vol);
    if (!v)
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not found; list volumes with 'vdlvm vol "
               "list %s'",
               p->name, vol, p->name);
    return v;
}

/* Snapshot names vdlvm keeps for itself (user snapshots may not start so).
 * IMPORT_MARK: an empty snapshot that marks a volume `vol import` is
 * still filling (vd_vol_import_mark). */
#define RESERVED    ".vdlvm-"
#define IMPORT_MARK ".vdlvm-import"

static bool reserved(const char *snap)
{
    return !strncmp(snap, RESERVED, strlen(RESERVED));
}

/* A user command naming a reserved snapshot: refused, nothing changed. */
static int refuse_reserved(vd_pool *p, const char *vol, const char *snap)
{
    vd_log(VD_LOG_ERR,
           "snapshot '%s/%s@%s': names starting with '%s' are reserved for "
           "vdlvm (%s marks a volume 'vdlvm vol import' is filling)",
           p->name, vol, snap, RESERVED, IMPORT_MARK);
    return -EINVAL;
}

bool vd_vol_is_importing(struct vd_vol *v)
{
    return vd_thin_has_snap(v, IMPORT_MARK);
}

/* Every user operation on a volume being imported but its removal. */
static int refuse_importing(vd_pool *p, const char *vol, const char *what)
{
    vd_log(VD_LOG_ERR,
           "volume '%s/%s': being imported ('vdlvm vol import' has not "
           "finished); cannot %s it until the import ends",
           p->name, vol, what);
    return -EBUSY;
}

/* ---- the API --------------------------------------------------------------- */
/* The volume cannot go away meanwhile: the admin thread is the only one
 * that removes volumes, and it is the caller. */
int vd_snap_create(vd_pool *p, const char *vol, const char *snap)
{
    if (!snap_name_ok(snap)) {
        vd_log(VD_LOG_ERR,
               "snapshot '%s/%s@%s': a name is 1-%d characters of A-Z a-z "
               "0-9 . _ - +",
               p->name, vol, snap, VD_SNAP_NAME_MAX);
        return -EINVAL;
    }
    if (reserved(snap))
        return refuse_reserved(p, vol, snap);
    vd_admin_lock(p);
    struct vd_vol *v = find_thin(p, vol);
    vd_admin_unlock(p);
    if (v && vd_vol_is_importing(v))
        return refuse_importing(p, vol, "snapshot");
    return v ? vd_thin_snap_create(v, snap) : -ENOENT;
}

int vd_snap_remove(vd_pool *p, const char *vol, const char *snap)
{
    if (reserved(snap))
        return refuse_reserved(p, vol, snap);
    vd_admin_lock(p);
    struct vd_vol *v = find_thin(p, vol);
    vd_admin_unlock(p);
    return v ? vd_thin_snap_remove(v, snap) : -ENOENT;
}

int vd_vol_revert(vd_pool *p, const char *vol, const char *snap, int force)
{
    if (reserved(snap))
        return refuse_reserved(p, vol, snap);
    vd_admin_lock(p);
    struct vd_vol *v = find_thin(p, vol);
    vd_admin_unlock(p);
    if (v && vd_vol_is_importing(v))
        return refuse_importing(p, vol, "revert");
    return v ? vd_thin_snap_revert(v, snap, force) : -ENOENT;
}

/* Import marker.  `vol import` creates the volume already marked (a
 * snapshot named IMPORT_MARK in the create's own commit: nothing copied,
 * and empty: the volume holds no data yet, so the head's writes never
 * copy for it), fills it, flushes it and removes the mark (one record).
 * So at every instant the volume is absent, marked, or whole.  While
 * marked only the importer has it open: vd_vol_open, vol clone, snap
 * create, revert and extend refuse it (-EBUSY), so no LUN, export or
 * clone sees a half image, and the reserved name cannot be named by a
 * user.  The pool is held by one process at a time (flock at open), so
 * a marked volume at open is one whose importer died: vd_snap_opened
 * removes it, and `vol remove` removes one no one has open. */
static int import_mark_op(vd_pool *p, const struct vd_op_vol *ov,
                          struct vd_opbuf *ops, void *arg)
{
    return vd_thin_first_snap_op(ov, IMPORT_MARK, ops);
}

int vd_vol_import_create(vd_pool *p, const char *name, uint64_t size,
                         const struct vd_vol_opts *opts, vd_vol **vol)
{
    struct vd_vol_opts o;

    if (opts)
        o = *opts;
    else
        vd_vol_opts_init(&o);
    o.thin = 1;
    *vol = NULL;
    return vd_vol_create_ext(p, name, size, &o, import_mark_op, NULL, vol);
}

int vd_vol_import_mark(vd_pool *p, const char *vol, int on)
{
    vd_admin_lock(p);
    struct vd_vol *v = find_thin(p, vol);
    vd_admin_unlock(p);
    if (!v)
        return -ENOENT;
    return on ? vd_thin_snap_create(v, IMPORT_MARK)
              : vd_thin_snap_remove(v, IMPORT_MARK);
}

static bool import_marked(struct vd_vol *v)
{
    return vd_thin_has_snap(v, IMPORT_MARK);
}

/* Remove a volume carrying the import mark, mark included: one
 * VOL_REMOVE record (the mark is the volume's own state and goes with it;
 * `vol remove` refuses volumes with snapshots only to keep a user's), so
 * a crash leaves the marked volume or nothing.  Not while it is open or
 * has clones (someone uses the half image: left for the user). */
int vd_vol_import_abort(vd_pool *p, const char *vol)
{
    struct vd_op_vol ov = { .h.type = VD_OP_VOL_REMOVE };
    struct vd_opbuf ops = { 0 };
    int r;

    vd_admin_lock(p);
    struct vd_vol *v = find_thin(p, vol);
    if (!v) {
        r = -ENOENT;
    } else if (!vd_thin_is_family(v) || !import_marked(v)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not being imported", p->name, vol);
        r = -EINVAL;
    } else if (v->open_count || vd_thin_clone_count(v)) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': half imported but in use (exported or "
               "cloned); remove it with 'vdlvm vol remove' when it is not",
               p->name, vol);
        r = -EBUSY;
    } else {
        ov.id = v->id;
        if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) == 0)
            r = vd_md_commit(p, &ops);
        vd_opbuf_free(&ops);
        if (r == 0)
            vd_pool_check_thresholds(p);
    }
    vd_admin_unlock(p);
    return r;
}

/* Pool open, before the background thread starts (so no other thread):
 * remove the volumes an interrupted import left. */
void vd_snap_opened(vd_pool *p)
{
    for (uint32_t i = 0; i < p->nvols;) {
        struct vd_vol *v = p->vols[i];
        if (!vd_thin_is_family(v) || !import_marked(v)) {
            i++;
            continue;
        }
        char name[VD_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%s", v->name);
        int r = vd_vol_import_abort(p, name);
        vd_log(r < 0 ? VD_LOG_ERR : VD_LOG_WARN,
               "volume '%s/%s': its import was interrupted; %s%s%s", p->name,
               name, r < 0 ? "could not remove it: " : "removed",
               r < 0 ? strerror(-r) : "",
               r < 0 ? "; remove it with 'vdlvm vol remove'" : "");
        if (r < 0)
            i++;
    }
}

int vd_snap_list(vd_pool *p, const char *vol, struct vd_snap_info **snaps,
                 size_t *n)
{
    vd_admin_lock(p);
    struct vd_vol *v = find_thin(p, vol);
    int r = v ? vd_thin_snap_list(v, snaps, n) : -ENOENT;
    vd_admin_unlock(p);
    if (r < 0)
        return r;
    size_t k = 0; /* vdlvm's own (the import mark) are not the user's */
    for (size_t i = 0; i < *n; i++)
        if (!reserved((*snaps)[i].name))
            (*snaps)[k++] = (*snaps)[i];
    *n = k;
    return r;
}

int vd_pool_check(vd_pool *p, int repair, struct vd_pool_check *res)
{
    int r = 0, bad = 0;

    memset(res, 0, sizeof(*res));
    vd_admin_lock(p);
    uint32_t n = p->nvols;
    struct vd_vol **vols = malloc((n ? n : 1) * sizeof(*vols));
    if (vols)
        memcpy(vols, p->vols, n * sizeof(*vols));
    vd_admin_unlock(p);
    if (!vols)
        return -ENOMEM;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        uint64_t leaked = 0, wrong = 0, rec = 0;
        if (!vd_thin_is_family(vols[i]) && !vols[i]->upper)
            continue;
        r = vd_thin_check(vols[i], repair, &leaked, &wrong, &rec);
        if (r < 0) {
            vd_log(VD_LOG_ERR, "volume '%s/%s': check failed: %s", p->name,
                   vols[i]->name, strerror(-r));
            break;
        }
        res->volumes++;
        res->leaked += leaked;
        res->bad += wrong;
        res->reclaimed += rec;
        if (repair)
            res->repaired += leaked;
        if (leaked || wrong) {
            bad = 1;
            vd_log(VD_LOG_WARN,
                   "volume '%s/%s': %llu leaked chunk(s)%s, %llu bad "
                   "reference(s)",
                   p->name, vols[i]->name, (unsigned long long)leaked,
                   repair ? " (freed)" : "", (unsigned long long)wrong);
        }
    }
    free(vols);
    return r < 0 ? r : bad;
}

/* ---- views: a snapshot opened read-only ------------------------------------ */
static int view_pread(struct vd_vol *v, void *buf, size_t len, uint64_t off,
                      unsigned flags)
{
    const struct snapview *sv = v->upper_priv;
    if (off > v->size || len > v->size - off)
        return -ERANGE;
    return vd_thin_snap_pread(sv->vol, sv->h, buf, len, off, flags);
}

static int view_pwrite(struct vd_vol *v, const void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    return -EROFS;
}

static int view_flush(struct vd_vol *v)
{
    return 0; /* nothing is ever written through a view */
}

static int view_discard(struct vd_vol *v, uint64_t off, uint64_t len)
{
    return -EROFS;
}

/* Every block reads as mapped: true for a snapshot's data, and never
 * wrong for its holes (they read zeroes either way). */
static int view_lba_status(struct vd_vol *v, uint64_t off, uint64_t *len,
                           int *mapped)
{
    if (off >= v->size)
        return -ERANGE;
    *len = v->size - off;
    *mapped = 1;
    return 0;
}

static const struct vd_layout_ops snapview_layout = {
    .name = "snapshot",
    .id = UINT32_MAX, /* never on disk, not in the registry */
    .pread = view_pread,
    .pwrite = view_pwrite,
    .flush = view_flush,
    .discard = view_discard,
    .lba_status = view_lba_status,
};

static const struct vd_layout_ops cloneview_layout;

/* Snapshot and clone views alike (closed by vd_snap_view_close). */
bool vd_snap_is_view(const struct vd_vol *v)
{
    return v->upper == &snapview_layout || v->upper == &cloneview_layout;
}

struct vd_vol *vd_snap_view_open(vd_pool *p, const char *full)
{
    char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
    struct vd_vol *o, *v;
    struct snapview *sv;
    void *h;
    uint64_t size;

    if (vd_snap_split(full, vol, snap) <= 0) {
        errno = EINVAL;
        return NULL;
    }
    if (reserved(snap)) {
        errno = -refuse_reserved(p, vol, snap);
        return NULL;
    }
    if (!(o = find_thin(p, vol))) {
        errno = ENOENT;
        return NULL;
    }
    if (vd_thin_snap_open(o, snap, &h, &size) < 0) {
        vd_log(VD_LOG_ERR,
               "snapshot '%s/%s': not found; list them with 'vdlvm snap list "
               "%s/%s'",
               p->name, full, p->name, vol);
        errno = ENOENT;
        return NULL;
    }
    v = calloc(1, sizeof(*v));
    sv = calloc(1, sizeof(*sv));
    if (!v || !sv) {
        free(v);
        free(sv);
        vd_thin_snap_close(o, h);
        errno = ENOMEM;
        return NULL;
    }
    sv->vol = o;
    sv->h = h;
    v->pool = p;
    v->id = o->id;
    snprintf(v->name, sizeof(v->name), "%s", full);
    v->size = size;
    v->layout = o->layout;
    v->copies = o->copies;
    v->lops = &snapview_layout;
    v->upper = &snapview_layout;
    v->upper_priv = sv;
    v->open_count = 1;
    pthread_rwlock_init(&v->map_lock, NULL);
    pthread_rwlock_init(&v->write_lock, NULL);
    o->open_count++;
    return v;
}

void vd_snap_view_close(struct vd_vol *v)
{
    struct snapview *sv = v->upper_priv;
    vd_admin_lock(v->pool);
    vd_thin_snap_close(sv->vol, sv->h);
    if (sv->vol->open_count)
        sv->vol->open_count--;
    vd_admin_unlock(v->pool);
    pthread_rwlock_destroy(&v->map_lock);
    pthread_rwlock_destroy(&v->write_lock);
    free(sv);
    free(v);
}

/* ---- clones ------------------------------------------------------------------
 * A clone is a writable member of its source's family (pool/thin.c): one
 * VD_OP_SNAP_CLONE record commits it (a new generation, child of the
 * source's; a writable source moves to a second new one, as `snap
 * create` moves the head), and its map starts as a copy of the source's
 * with every chunk's reference count raised.  So it shares every chunk
 * until it writes one (copy-on-write into its own generation, committed
 * before the acknowledgement, as the head's), reads are one lookup at any
 * depth, and sources can be removed in any order: a snapshot's or clone's
 * removal drops its references, a chunk is freed when none is left.  The
 * volume a family lives in cannot be removed while it has clones (its
 * data space holds their chunks).
 * Crash: before the record, no clone (the prepared map is RAM only);
 * after it, the clone's generation descends from the source's durable
 * state (flushed first), exactly as a snapshot's.
 * Clones are named like volumes (unique among volumes and clones), found
 * by scanning the families (admin lock), opened as views whose writes go
 * to vd_thin_clone_pwrite. */
static struct vd_vol *clone_family_locked(vd_pool *p, const char *name)
{
    for (uint32_t i = 0; i < p->nvols; i++) {
        struct vd_vol *v = p->vols[i];
        if (!vd_thin_is_family(v) || !vd_thin_clone_count(v))
            continue;
        char *names = vd_thin_clone_names(v), *s = names;
        bool hit = false;
        while (s && *s && !hit) {
            char *nl = strchr(s, '\n');
            hit = (size_t)(nl - s) == strlen(name) && !strncmp(s, name, nl - s);
            s = nl + 1;
        }
        free(names);
        if (hit)
            return v;
    }
    return NULL;
}

bool vd_clone_exists_locked(vd_pool *p, const char *name)
{
    return clone_family_locked(p, name) != NULL;
}

int vd_clone_vol_info_locked(vd_pool *p, const char *name,
                             struct vd_vol_info *info,
                             void (*fill)(const struct vd_vol *,
                                          struct vd_vol_info *))
{
    struct vd_vol *o = name ? clone_family_locked(p, name) : NULL;
    uint64_t size, ex, sh;
    char origin[2 * VD_NAME_MAX + 2];
    int exported;

    if (!o || vd_thin_clone_info(o, name, &size, &ex, &sh, origin,
                                 sizeof(origin), &exported) < 0)
        return -ENOENT;
    fill(o, info);
    snprintf(info->name, sizeof(info->name), "%s", name);
    info->size = size;
    info->open_count = exported > 0;
    return 0;
}

int vd_vol_clone(vd_pool *p, const char *src, const char *name)
{
    char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
    struct vd_vol *o = NULL;
    const char *member = NULL;
    bool src_clone = false;
    int r = 0;

    if (!vd_name_is_valid(name)) {
        vd_log(VD_LOG_ERR, "'%s': not a valid volume name", name);
        return -EINVAL;
    }
    if ((r = vd_snap_split(src, vol, snap)) < 0)
        return r;
    vd_admin_lock(p);
    if (vd_vol_find(p, name) || clone_family_locked(p, name)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': exists already", p->name, name);
        r = -EEXIST;
    } else if (r == 1) {
        if ((o = find_thin(p, vol)))
            member = snap;
    } else if (!(o = vd_vol_find(p, src))) {
        if ((o = clone_family_locked(p, src))) {
            member = src;
            src_clone = true;
        } else {
            vd_log(VD_LOG_ERR,
                   "volume '%s/%s': not found; list volumes with 'vdlvm "
                   "vol list %s'",
                   p->name, src, p->name);
        }
    }
    if (r >= 0 && !o)
        r = -ENOENT;
    if (r >= 0 && member && !src_clone && reserved(member))
        r = refuse_reserved(p, vol, member);
    else if (r >= 0 && vd_vol_is_importing(o))
        r = refuse_importing(p, o->name, "clone");
    vd_admin_unlock(p);
    if (r < 0)
        return r;
    return vd_thin_clone_create(o, member, src_clone, name);
}

int vd_clone_remove_if(vd_pool *p, const char *name)
{
    vd_admin_lock(p);
    struct vd_vol *o =
        vd_vol_find(p, name) ? NULL : clone_family_locked(p, name);
    vd_admin_unlock(p);
    return o ? vd_thin_clone_remove(o, name) : 1;
}

static int clone_info_locked(vd_pool *p, struct vd_vol *o, const char *name,
                             struct vd_clone_info *ci)
{
    memset(ci, 0, sizeof(*ci));
    snprintf(ci->name, sizeof(ci->name), "%s", name);
    return vd_thin_clone_info(o, name, &ci->size, &ci->exclusive, &ci->shared,
                              ci->origin, sizeof(ci->origin), &ci->exported);
}

int vd_clone_get_info(vd_pool *p, const char *name, struct vd_clone_info *ci)
{
    vd_admin_lock(p);
    struct vd_vol *o = clone_family_locked(p, name);
    int r = o ? clone_info_locked(p, o, name, ci) : -ENOENT;
    vd_admin_unlock(p);
    return r;
}

int vd_clone_list(vd_pool *p, struct vd_clone_info **out, size_t *n)
{
    struct vd_clone_info *a = NULL;
    size_t k = 0;
    int r = 0;

    vd_admin_lock(p);
    for (uint32_t i = 0; i < p->nvols && r == 0; i++) {
        struct vd_vol *v = p->vols[i];
        if (!vd_thin_is_family(v) || !vd_thin_clone_count(v))
            continue;
        char *names = vd_thin_clone_names(v), *s = names;
        if (!names)
            r = -ENOMEM;
        while (r == 0 && s && *s) {
            char *nl = strchr(s, '\n');
            *nl = 0;
            struct vd_clone_info *na = realloc(a, (k + 1) * sizeof(*a));
            if (!na) {
                r = -ENOMEM;
                break;
            }
            a = na;
            if (clone_info_locked(p, v, s, &a[k]) == 0)
                k++;
            s = nl + 1;
        }
        free(names);
    }
    vd_admin_unlock(p);
    if (r < 0) {
        free(a);
        return r;
    }
    *out = a;
    *n = k;
    return 0;
}

static int cview_pread(struct vd_vol *v, void *buf, size_t len, uint64_t off,
                       unsigned flags)
{
    const struct snapview *sv = v->upper_priv;
    if (off > v->size || len > v->size - off)
        return -ERANGE;
    return vd_thin_snap_pread(sv->vol, sv->h, buf, len, off, flags);
}

static int cview_pwrite(struct vd_vol *v, const void *buf, size_t len,
                        uint64_t off, unsigned flags)
{
    const struct snapview *sv = v->upper_priv;
    return vd_thin_clone_pwrite(sv->vol, sv->h, buf, len, off, flags);
}

static int cview_flush(struct vd_vol *v)
{
    const struct snapview *sv = v->upper_priv;
    return sv->vol->lops->flush(sv->vol);
}

/* UNMAP: the clone's own chunks are freed where no ancestor's data would
 * show through after a reopen; zeroes elsewhere (vd_thin_clone_discard). */
static int cview_discard(struct vd_vol *v, uint64_t off, uint64_t len)
{
    const struct snapview *sv = v->upper_priv;
    return vd_thin_clone_discard(sv->vol, sv->h, off, len);
}

/* Mapped where the clone's map names a chunk: what UNMAP freed reads as
 * unmapped (so tgt's UNMAP path does not write zeroes over it again). */
static int cview_lba_status(struct vd_vol *v, uint64_t off, uint64_t *len,
                            int *mapped)
{
    const struct snapview *sv = v->upper_priv;
    return vd_thin_clone_lba_status(sv->vol, sv->h, off, len, mapped);
}

static const struct vd_layout_ops cloneview_layout = {
    .name = "clone",
    .id = UINT32_MAX, /* never on disk, not in the registry */
    .pread = cview_pread,
    .pwrite = cview_pwrite,
    .flush = cview_flush,
    .discard = cview_discard,
    .lba_status = cview_lba_status,
};

struct vd_vol *vd_clone_view_open(vd_pool *p, const char *name)
{
    struct vd_vol *o = clone_family_locked(p, name), *v;
    struct snapview *sv;
    void *h;
    uint64_t size;

    if (!o || vd_thin_clone_open(o, name, &h, &size) < 0) {
        errno = ENOENT;
        return NULL;
    }
    v = calloc(1, sizeof(*v));
    sv = calloc(1, sizeof(*sv));
    if (!v || !sv) {
        free(v);
        free(sv);
        vd_thin_snap_close(o, h);
        errno = ENOMEM;
        return NULL;
    }
    sv->vol = o;
    sv->h = h;
    v->pool = p;
    v->id = o->id;
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->size = size;
    v->layout = o->layout;
    v->copies = o->copies;
    v->lops = &cloneview_layout;
    v->upper = &cloneview_layout;
    v->upper_priv = sv;
    v->open_count = 1;
    pthread_rwlock_init(&v->map_lock, NULL);
    pthread_rwlock_init(&v->write_lock, NULL);
    o->open_count++;
    return v;
}
