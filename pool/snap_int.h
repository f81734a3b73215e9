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

#ifdef __cplusplus
}
#endif
#endif
