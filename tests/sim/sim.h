/* vdsim: the deterministic fault simulator (tests/sim/).
 *
 * One schedule runs in one forked child process.  Inside it, the library's
 * threads (the replica thread) and the simulator's own threads (the driver
 * and one worker per asynchronous operation) are green threads
 * (ucontext) run one at a time by a cooperative scheduler: every
 * pthread lock, condition, sleep, clock read and simulated device call the
 * library makes goes through the wrappers in sched.c (linked with
 * -Wl,--wrap=...), and each of them is a scheduling point where a seeded
 * PRNG picks the next thread.  Virtual time advances only when every
 * thread is blocked.  So a schedule is a deterministic function of its
 * seed and replays exactly.  See docs/sim.md.
 *
 * Single kernel thread: nothing here needs a lock.  Everything below is
 * owned by the child process of one schedule.
 */
#ifndef VDSIM_H
#define VDSIM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- PRNG (splitmix64; one stream per purpose) ---- */
struct rng {
    uint64_t s;
};
static inline uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
    return n ? rng_next(r) % n : 0;
}
/* true with probability pct/100 */
static inline bool rng_pct(struct rng *r, unsigned pct)
{
    return rng_below(r, 100) < pct;
}

/* ---- scheduler (sched.c) ---- */
#define SIM_MAX_THREADS 256
/* Run main_fn(arg) as green thread 0 until it returns; other threads left
 * then are abandoned.  stick_pct: chance that a thread at a scheduling
 * point keeps running. */
void sched_run(uint64_t seed, unsigned stick_pct, void (*main_fn)(void *),
               void *arg);
int sched_spawn(const char *name, void *(*fn)(void *), void *arg);
/* 0, or -1 if the thread died in a crash. */
int sched_join(int id);
bool sched_done(int id);
void sched_point(void);
void sched_sleep_ns(uint64_t ns);
uint64_t sched_now_ns(void);
/* Kill every thread but the caller and forget every lock (a crash). */
void sched_crash(void);
int sched_self(void);
uint64_t sched_switches(void);
/* Positions of all live threads, for reports. */
void sched_dump(void);
/* Is the pthread object (a lock) held or being waited for by anyone? */
bool sched_lock_busy(const void *obj);
extern bool g_sim_active;

/* ---- reports (vdsim.c) ---- */
extern uint64_t g_seed;
extern int g_verbose;
void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void sim_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* ---- simulated devices (simdev.c) ---- */
#define SIM_MAX_DEVS 8
#define SIM_BLK 4096u
struct simdev;
struct simdev *simdev_new(const char *name, uint64_t size);
struct simdev *simdev_find(const char *name);
void simdev_reset_all(void);
/* Faults. */
void simdev_set_down(struct simdev *d, int down /* 0 up, 1 EIO, 2 timeout */);
int simdev_is_down(const struct simdev *d);
void simdev_set_bad(struct simdev *d, uint64_t off, uint64_t len);
void simdev_set_error_pct(struct simdev *d, unsigned pct);
/* Crash: the cache is lost; with persist_pct, that share of the unflushed
 * blocks reached the medium first (as real disks do). */
void simdev_crash_all(struct rng *r, unsigned persist_pct);
/* Contents: cache view (what a read returns) or durable view. */
void simdev_read(struct simdev *d, void *buf, uint64_t len, uint64_t off,
                 bool durable);
/* Is any block of [off, off+len) in the cache but not on the medium? */
bool simdev_unflushed(struct simdev *d, uint64_t off, uint64_t len);
const char *simdev_name(const struct simdev *d);
uint64_t simdev_ops(void);
/* Set by the simulator: called after every write/flush that changed a
 * device (in the thread that did it), and the device-op knobs. */
extern void (*g_simdev_hook)(struct simdev *d, uint64_t off, uint64_t len,
                             int kind);
extern struct rng g_dev_rng;
extern unsigned g_dev_delay_pct;   /* chance an op takes virtual time */
#endif
