/* vdlvm: snapshots of thin volumes, between pool/snap.c (the API, views)
 * and pool/thin.c (the family map: generations, member maps, references).
 * Design, locks and crash argument: pool/snap.c. */
#ifndef VD_SNAP_INT_H
#define VD_SNAP_INT_H

#include <stdbool.h>

#include "layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A thin volume whose map carries generations (snapshots possible). */
bool vd_thin_is_family(struct vd_vol *v);
/* Admin thread, no lock held (they take io_lock, admin lock, thin lock in
 * that order). */
int vd_thin_snap_create(struct vd_vol *v, const char *name);
int vd_thin_snap_remove(struct vd_vol *v, const char *name);
int vd_thin_snap_revert(struct vd_vol *v, const char *name, bool force);
int vd_thin_check(struct vd_vol *v, bool repair, uint64_t *leaked,
                  uint64_t *bad, uint64_t *reclaimed);
/* Any thread. */
int vd_thin_snap_count(struct vd_vol *v);
int vd_thin_snap_list(struct vd_vol *v, struct vd_snap_info **out, size_t *n);
/* Admin lock held. */
int vd_thin_snap_open(struct vd_vol *v, const char *name, void **h,
                      uint64_t *size);
void vd_thin_snap_close(struct vd_vol *v, void *h);
/* I/O thread: like the layout's pread, on snapshot id. */
int vd_thin_snap_pread(struct vd_vol *v, void *h, void *buf, size_t len,
                       uint64_t off, unsigned flags);

/* Clones: writable members named like volumes (pool/snap.c).  Admin
 * thread, no lock held: create (src NULL: the volume itself; else a
 * snapshot's name, or a clone's when src_clone), remove. */
int vd_thin_clone_create(struct vd_vol *v, const char *src, bool src_clone,
                         const char *name);
int vd_thin_clone_remove(struct vd_vol *v, const char *name);
/* Any thread. */
int vd_thin_clone_count(struct vd_vol *v);
char *vd_thin_clone_names(struct vd_vol *v);
/* Admin lock held. */
int vd_thin_clone_open(struct vd_vol *v, const char *name, void **h,
                       uint64_t *size);
int vd_thin_clone_info(struct vd_vol *v, const char *name, uint64_t *size,
                       uint64_t *exclusive, uint64_t *shared, char *origin,
                       size_t olen, int *exported);
/* I/O thread (close: vd_thin_snap_close; read: vd_thin_snap_pread). */
int vd_thin_clone_pwrite(struct vd_vol *v, void *h, const void *buf, size_t len,
                         uint64_t off, unsigned flags);
/* I/O thread: UNMAP; frees the clone's own chunks when nothing shows
 * through, writes zeroes elsewhere (pool/thin.c). */
int vd_thin_clone_discard(struct vd_vol *v, void *h, uint64_t off,
                          uint64_t len);
/* Any thread: like the layout's lba_status, on clone h. */
int vd_thin_clone_lba_status(struct vd_vol *v, void *h, uint64_t off,
                             uint64_t *len, int *mapped);

/* Any thread: v is a family with a snapshot (not a clone) named name. */
bool vd_thin_has_snap(struct vd_vol *v, const char *name);
/* Admin lock held: add to ops (the commit creating the thin volume of
 * record ov, after its VD_OP_STACK) the SNAP_CREATE of its first
 * snapshot, named name. */
int vd_thin_first_snap_op(const struct vd_op_vol *ov, const char *name,
                          struct vd_opbuf *ops);

/* pool/vol.c: vd_vol_create; more (when not NULL) adds records to the
 * create's own commit (admin lock held, ov: the new volume's record), and
 * opened (when not NULL) gets the volume opened in the same lock hold. */
int vd_vol_create_ext(vd_pool *p, const char *name, uint64_t size,
                      const struct vd_vol_opts *opts,
                      int (*more)(vd_pool *, const struct vd_op_vol *,
                                  struct vd_opbuf *, void *),
                      void *arg, struct vd_vol **opened);
/* Tests only: called by vd_vol_create after the name's syntax check,
 * before the admin lock (where another create can interleave). */
extern void (*g_vol_create_test_hook)(const char *name);

/* pool/snap.c: v carries the import mark (vol import fills it; opens,
 * clones and snapshots refused).  Any thread. */
bool vd_vol_is_importing(struct vd_vol *v);

/* Tests only: see pool/thin.c. */
extern void (*vd_snap_crash_hook)(const char *step);

/* pool/snap.c: views ("VOL@SNAP" opened by vd_vol_open); admin lock held. */
struct vd_vol *vd_snap_view_open(vd_pool *p, const char *full);
bool vd_snap_is_view(const struct vd_vol *v);
void vd_snap_view_close(struct vd_vol *v);
/* Clones by name (a volume name no volume has): open NULL (errno ENOENT)
 * when none; remove 1 when none. */
struct vd_vol *vd_clone_view_open(vd_pool *p, const char *name);
int vd_clone_remove_if(vd_pool *p, const char *name);
bool vd_clone_exists_locked(vd_pool *p, const char *name);
/* vd_vol_get_info of a clone: fill (vol.c's) with its family, then its
 * name, size and open state.  -ENOENT when name is no clone. */
int vd_clone_vol_info_locked(vd_pool *p, const char *name,
                             struct vd_vol_info *info,
                             void (*fill)(const struct vd_vol *,
                                          struct vd_vol_info *));

#ifdef __cplusplus
}
#endif
#endif
