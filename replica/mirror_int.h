/* vdlvm replica internals shared with tests and the fault simulator.
 * Not a public header: only replica/ and tests include it. */
#ifndef MIRROR_INT_H
#define MIRROR_INT_H

#ifdef __cplusplus
extern "C" {
#endif

struct vd_vol;

/* When set (by a test, before the pool is opened), called at points where
 * a mirror operation starts waiting for another: "range-wait" (a leg
 * writer or verify queues behind an overlapping range), "replace-wait" (a
 * leg replacement waits for a resync or clean pass to end).  Called with
 * the mirror's lock held: it must only record. */
extern void (*g_mirror_test_hook)(struct vd_vol *v, const char *event);

#ifdef __cplusplus
}
#endif
#endif
