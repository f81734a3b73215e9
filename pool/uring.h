/* vdlvm: io_uring rings for local files and block devices (pool/uring.c).
 * Internal to pool/ (dev.c's file driver uses it); the reaping calls are
 * public (vd_async_fd, vd_async_poll in vdpool.h).  Thread-safe. */
#ifndef VD_URING_H
#define VD_URING_H

#include "pool_int.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vd_uring;
/* A ring for fd (kept open by the caller until vd_uring_close).  NULL
 * when io_uring is off (VDLVM_URING=0 in the environment) or unavailable:
 * the caller keeps its thread path; the reason is logged once per
 * process.  name: the file, for that message. */
struct vd_uring *vd_uring_open(int fd, const char *name);
/* The bdev submit contract (pool_int.h): 0 started, bio->done runs
 * exactly once later on the reaping thread; -EAGAIN: ring full, nothing
 * started.  Never blocks (a short leaf lock). */
int vd_uring_submit(struct vd_uring *u, struct vd_bio *bio);
/* Requests in flight on u (tests). */
unsigned vd_uring_inflight(struct vd_uring *u);
/* Complete whatever is still in flight (their done runs on this thread),
 * then free the ring.  NULL is fine. */
void vd_uring_close(struct vd_uring *u);

/* True once an event loop reaps (vd_async_fd): asynchronous volume I/O
 * is possible only then (its locks are released on the loop's thread). */
bool vd_async_external(void);
/* Wake the event loop (any thread): vd_async_poll will run. */
void vd_async_signal(void);
/* Tests: act as an event loop (on) or give the rings back to the reaper
 * thread (off). */
void vd_async_set_external(bool on);
/* Buffered local files take the asynchronous path too (io_uring): off
 * unless VDLVM_ASYNC=all in the environment (read once) or a test turns
 * it on; see vd_dev_async_ok (pool/dev.c) for why it is off. */
bool vd_async_local(void);
void vd_async_set_local(bool on);
/* vol.c: complete the volume requests that ended (vd_async_poll's
 * thread). */
void vd_vol_async_run(void);

#ifdef __cplusplus
}
#endif
#endif
