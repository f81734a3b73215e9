/* vdsim: green threads, the cooperative scheduler, and the --wrap'ed
 * pthread/time functions the library calls.
 *
 * Model (one kernel thread; only one green thread runs at a time):
 * - A wrapped call made from a green thread is a scheduling point: the
 *   thread returns to the scheduler, which picks the next runnable thread
 *   with the seeded PRNG (stick_pct: chance the same thread goes on).
 * - Locks are modelled here, not in the kernel: a mutex/rwlock that is
 *   taken blocks the thread in the scheduler (state BLK on the lock);
 *   unlock makes every waiter runnable and each retries.  rwlocks prefer
 *   readers (glibc's default) unless initialised writer-preferring (then a
 *   reader waits while a writer waits, and a thread taking a read lock
 *   twice behind a waiting writer deadlocks, as in glibc); a thread
 *   rdlocking a rwlock it holds for writing gets EDEADLK (as glibc).  Unlocking a lock one does not hold
 *   is reported as a violation.
 * - Condition variables: wait releases the mutex and blocks until a
 *   signal (one waiter, chosen by the PRNG), a broadcast or the deadline.
 * - Time is virtual: clock_gettime/time/gettimeofday read it; sleeps and
 *   timed waits block until it reaches their deadline.  It advances, to
 *   the earliest deadline, only when no thread is runnable.  No runnable
 *   thread and no deadline: a deadlock, reported with every thread's
 *   position (addresses: addr2line -f -e build/vdsim ADDR).
 * Outside green threads (the runner, the child before sched_run) every
 * wrapper calls the real function.
 */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "sim.h"

#define STACK_SIZE (512u << 10)
#define NLOCKS 4096
#define INF UINT64_MAX
#define RT_BASE_NS (1800000000ull * 1000000000ull) /* realtime epoch */
#define MONO_BASE_NS (1000ull * 1000000000ull)
#define MAX_SWITCHES 20000000ull
#define MAX_VTIME_NS (3600ull * 1000000000ull)     /* 1 h of virtual time */

enum { T_FREE = 0, T_RUN, T_BLK, T_DONE, T_DEAD };
enum { L_MUTEX = 1, L_RW, L_COND, L_SPIN };

struct lk {
    const void *addr;        /* NULL: free slot */
    int kind;
    int recursive;
    int owner;               /* mutex/rw writer: thread id + 1, 0 none */
    int count;               /* mutex recursion */
    int readers;
    int wwait;               /* rw: threads blocked in wrlock */
    int prefer_writer;       /* rw: readers wait behind a waiting writer */
    int clock;               /* cond */
};

struct rdhold {
    struct lk *l;
    int n;
};

struct th {
    int state;
    char name[32];
    ucontext_t ctx;
    void *stack;
    void *(*fn)(void *);
    void *arg;
    const void *wait_obj;    /* pthread object or thread waited for (never
                                a lock-table entry: entries move) */
    const char *wait_what;
    const void *where;       /* return address of the wrapped call */
    uint64_t deadline;       /* INF: none */
    int timed_out, signalled;
    int errno_saved;
    int started;
    jmp_buf jb;              /* where it stopped (after the first start) */
    struct rdhold rd[16];
};

bool g_sim_active;
static struct th g_th[SIM_MAX_THREADS];
static int g_nth;
static struct th *g_cur;
static jmp_buf g_sched_jb;
static struct th *g_next; /* the thread the scheduler switched to */
static struct rng g_rng;
static unsigned g_stick;
static uint64_t g_now, g_switches;
static struct lk g_locks[NLOCKS];
static void *g_stacks[SIM_MAX_THREADS];
static int g_nstacks;

int __real_pthread_mutex_lock(pthread_mutex_t *m);
int __real_pthread_mutex_trylock(pthread_mutex_t *m);
int __real_pthread_mutex_unlock(pthread_mutex_t *m);
int __real_pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *t);
int __real_pthread_mutex_destroy(pthread_mutex_t *m);
int __real_pthread_rwlock_rdlock(pthread_rwlock_t *l);
int __real_pthread_rwlock_wrlock(pthread_rwlock_t *l);
int __real_pthread_rwlock_tryrdlock(pthread_rwlock_t *l);
int __real_pthread_rwlock_trywrlock(pthread_rwlock_t *l);
int __real_pthread_rwlock_unlock(pthread_rwlock_t *l);
int __real_pthread_rwlock_destroy(pthread_rwlock_t *l);
int __real_pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *a);
int __real_pthread_cond_destroy(pthread_cond_t *c);
int __real_pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m);
int __real_pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  const struct timespec *t);
int __real_pthread_cond_signal(pthread_cond_t *c);
int __real_pthread_cond_broadcast(pthread_cond_t *c);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);
int __real_pthread_join(pthread_t t, void **ret);
int __real_pthread_detach(pthread_t t);
pthread_t __real_pthread_self(void);
int __real_usleep(useconds_t us);
int __real_nanosleep(const struct timespec *req, struct timespec *rem);
int __real_clock_nanosleep(clockid_t c, int flags, const struct timespec *req,
                           struct timespec *rem);
unsigned __real_sleep(unsigned s);
int __real_clock_gettime(clockid_t c, struct timespec *ts);
time_t __real_time(time_t *t);
int __real_gettimeofday(struct timeval *tv, void *tz);
int __real_sched_yield(void);

/* ---- locks table ---- */
static struct lk *lk_get(const void *addr, int kind)
{
    uint64_t h = ((uintptr_t)addr >> 3) * 0x9e3779b97f4a7c15ull;
    size_t i = h % NLOCKS, free_slot = NLOCKS;

    for (size_t n = 0; n < NLOCKS; n++, i = (i + 1) % NLOCKS) {
        if (g_locks[i].addr == addr)
            return &g_locks[i];
        if (!g_locks[i].addr) {
            free_slot = i;
            break;
        }
    }
    if (free_slot == NLOCKS)
        sim_fail("simulator: lock table full");
    struct lk *l = &g_locks[free_slot];
    memset(l, 0, sizeof(*l));
    l->addr = addr;
    l->kind = kind;
    if (kind == L_MUTEX)
        l->recursive = (((const pthread_mutex_t *)addr)->__data.__kind & 3) ==
                       PTHREAD_MUTEX_RECURSIVE_NP;
    l->clock = CLOCK_REALTIME;
    return l;
}

/* Removing an entry from open addressing: re-insert the followers. */
static void lk_forget(const void *addr)
{
    uint64_t h = ((uintptr_t)addr >> 3) * 0x9e3779b97f4a7c15ull;
    size_t i = h % NLOCKS;

    for (size_t n = 0; n < NLOCKS; n++, i = (i + 1) % NLOCKS) {
        if (!g_locks[i].addr)
            return;
        if (g_locks[i].addr == addr)
            break;
    }
    if (g_locks[i].addr != addr)
        return;
    if (g_locks[i].owner || g_locks[i].readers)
        sim_fail("lock %p destroyed while held", addr);
    g_locks[i].addr = NULL;
    for (size_t j = (i + 1) % NLOCKS; g_locks[j].addr; j = (j + 1) % NLOCKS) {
        struct lk e = g_locks[j];
        g_locks[j].addr = NULL;
        struct lk *n = lk_get(e.addr, e.kind);
        *n = e;
    }
}

bool sched_lock_busy(const void *obj)
{
    uint64_t h = ((uintptr_t)obj >> 3) * 0x9e3779b97f4a7c15ull;
    size_t i = h % NLOCKS;

    for (size_t n = 0; n < NLOCKS && g_locks[i].addr; n++, i = (i + 1) % NLOCKS)
        if (g_locks[i].addr == obj)
            return g_locks[i].owner || g_locks[i].readers;
    return false;
}

/* ---- threads ---- */
int sched_self(void)
{
    return g_cur ? (int)(g_cur - g_th) : -1;
}

uint64_t sched_now_ns(void)
{
    return g_now;
}

uint64_t sched_switches(void)
{
    return g_switches;
}

static void to_sched(void)
{
    struct th *t = g_cur;
    t->errno_saved = errno;
    /* _setjmp/_longjmp: no signal-mask system call per switch */
    if (!_setjmp(t->jb))
        _longjmp(g_sched_jb, 1);
    errno = t->errno_saved;
}

static void point_at(const void *where, const char *what)
{
    g_cur->where = where;
    g_cur->wait_what = what;
    to_sched();
}

void sched_point(void)
{
    if (g_cur)
        point_at(__builtin_return_address(0), "point");
}

/* Block the current thread on obj until woken (or deadline). */
static void block_on(const void *obj, const char *what, uint64_t deadline)
{
    g_cur->state = T_BLK;
    g_cur->wait_obj = obj;
    g_cur->wait_what = what;
    g_cur->deadline = deadline;
    g_cur->timed_out = 0;
    g_cur->signalled = 0;
    to_sched();
}

static void wake_all(const void *obj)
{
    for (int i = 0; i < g_nth; i++)
        if (g_th[i].state == T_BLK && g_th[i].wait_obj == obj) {
            g_th[i].state = T_RUN;
            g_th[i].signalled = 1;
        }
}

void sched_sleep_ns(uint64_t ns)
{
    if (!g_cur)
        return;
    block_on(NULL, "sleep", g_now + ns);
}

static void trampoline(void)
{
    struct th *t = g_cur;
    t->fn(t->arg);
    t->state = T_DONE;
    wake_all(t);
    _longjmp(g_sched_jb, 1);
}

int sched_spawn(const char *name, void *(*fn)(void *), void *arg)
{
    int id = -1;

    for (int i = 1; i < g_nth; i++)
        if (g_th[i].state == T_FREE) {
            id = i;
            break;
        }
    if (id < 0) {
        if (g_nth == SIM_MAX_THREADS)
            sim_fail("simulator: too many threads");
        id = g_nth++;
    }
    struct th *t = &g_th[id];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->fn = fn;
    t->arg = arg;
    t->deadline = INF;
    t->stack = g_nstacks ? g_stacks[--g_nstacks]
                         : mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
                                    MAP_STACK,
                                -1, 0);
    if (t->stack == MAP_FAILED)
        sim_fail("simulator: mmap stack: %s", strerror(errno));
    getcontext(&t->ctx);
    t->ctx.uc_stack.ss_sp = t->stack;
    t->ctx.uc_stack.ss_size = STACK_SIZE;
    t->ctx.uc_link = NULL;
    makecontext(&t->ctx, trampoline, 0);
    t->state = T_RUN;
    return id;
}

static void release_stack(struct th *t)
{
    if (t->stack && t != g_cur) {
        g_stacks[g_nstacks++] = t->stack;
        t->stack = NULL;
    }
}

bool sched_done(int id)
{
    return g_th[id].state == T_DONE || g_th[id].state == T_DEAD ||
           g_th[id].state == T_FREE;
}

int sched_join(int id)
{
    struct th *t = &g_th[id];
    while (t->state == T_RUN || t->state == T_BLK)
        block_on(t, "join", INF);
    int r = t->state == T_DEAD ? -1 : 0;
    release_stack(t);
    t->state = T_FREE;
    return r;
}

void sched_crash(void)
{
    for (int i = 0; i < g_nth; i++) {
        struct th *t = &g_th[i];
        if (t == g_cur || t->state == T_FREE)
            continue;
        if (t->state != T_DEAD)
            t->state = T_DEAD;
        release_stack(t);
    }
    memset(g_locks, 0, sizeof(g_locks));
    memset(g_cur->rd, 0, sizeof(g_cur->rd));
}

void sched_dump(void)
{
    for (int i = 0; i < g_nth; i++) {
        struct th *t = &g_th[i];
        static const char *st[] = { "free", "runnable", "blocked", "done", "dead" };
        if (t->state == T_FREE || t->state == T_DONE || t->state == T_DEAD)
            continue;
        fprintf(stderr, "  thread %d '%s': %s in %s on %p at %p%s\n", i,
                t->name, st[t->state], t->wait_what ? t->wait_what : "?",
                t->wait_obj, t->where,
                t->deadline != INF ? " (timed)" : "");
    }
    fprintf(stderr, "  (addresses: addr2line -f -e build/vdsim ADDR)\n");
}

static void (*g_main_fn)(void *);
static void *main_tramp(void *arg)
{
    g_main_fn(arg);
    return NULL;
}

void sched_run(uint64_t seed, unsigned stick_pct, void (*main_fn)(void *),
               void *arg)
{
    g_rng.s = seed ^ 0x5c4ed01e5c4ed01eull;
    g_stick = stick_pct;
    g_now = 0;
    g_switches = 0;
    g_cur = NULL;
    memset(g_locks, 0, sizeof(g_locks));
    g_nth = 0;
    g_main_fn = main_fn;
    int main_id = sched_spawn("main", main_tramp, arg);
    struct th *prev = NULL;
    g_sim_active = true;
    for (;;) {
        if (g_th[main_id].state == T_DONE || g_th[main_id].state == T_DEAD)
            break;
        int run[SIM_MAX_THREADS], n = 0;
        for (int i = 0; i < g_nth; i++)
            if (g_th[i].state == T_RUN)
                run[n++] = i;
        if (!n) {
            uint64_t dl = INF;
            for (int i = 0; i < g_nth; i++)
                if (g_th[i].state == T_BLK && g_th[i].deadline < dl)
                    dl = g_th[i].deadline;
            if (dl == INF) {
                g_cur = NULL;
                fprintf(stderr, "vdsim: seed %llu: deadlock: every thread "
                        "waits on a lock, condition or thread, none on time\n",
                        (unsigned long long)g_seed);
                sched_dump();
                sim_fail("deadlock");
            }
            if (dl > g_now)
                g_now = dl;
            if (g_now > MAX_VTIME_NS)
                sim_fail("virtual time passed 1 h: something waits forever");
            for (int i = 0; i < g_nth; i++)
                if (g_th[i].state == T_BLK && g_th[i].deadline <= g_now) {
                    g_th[i].state = T_RUN;
                    g_th[i].timed_out = 1;
                }
            continue;
        }
        struct th *next;
        if (prev && prev->state == T_RUN && rng_pct(&g_rng, g_stick))
            next = prev;
        else
            next = &g_th[run[rng_below(&g_rng, n)]];
        if (++g_switches > MAX_SWITCHES)
            sim_fail("more than %llu scheduling points: livelock?",
                     MAX_SWITCHES);
        g_cur = next;
        g_next = next;
        if (!_setjmp(g_sched_jb)) {
            if (!g_next->started) {
                g_next->started = 1;
                setcontext(&g_next->ctx);
            }
            _longjmp(g_next->jb, 1);
        }
        next = g_next;
        g_cur = NULL;
        prev = next;
        if (next->state == T_DONE)
            release_stack(next);
    }
    g_sim_active = false;
    for (int i = 0; i < g_nth; i++)
        release_stack(&g_th[i]);
}

/* ---- wrapped pthread functions ---- */
#define RA __builtin_return_address(0)

static int mutex_acquire(pthread_mutex_t *m, uint64_t deadline)
{
    int me = sched_self() + 1;
    for (;;) {
        struct lk *l = lk_get(m, L_MUTEX);
        if (!l->owner) {
            l->owner = me;
            l->count = 1;
            return 0;
        }
        if (l->owner == me) {
            if (l->recursive) {
                l->count++;
                return 0;
            }
            sim_fail("thread %d '%s' locks mutex %p it already holds (at %p)",
                     me - 1, g_cur->name, (void *)m, g_cur->where);
        }
        block_on(l->addr, "mutex_lock", deadline);
        if (g_cur->timed_out)
            return ETIMEDOUT;
    }
}

int __wrap_pthread_mutex_lock(pthread_mutex_t *m)
{
    if (!g_cur)
        return __real_pthread_mutex_lock(m);
    point_at(RA, "mutex_lock");
    return mutex_acquire(m, INF);
}

static uint64_t abs_to_v(int clock, const struct timespec *t)
{
    uint64_t ns = (uint64_t)t->tv_sec * 1000000000ull + t->tv_nsec;
    uint64_t base = clock == CLOCK_REALTIME ? RT_BASE_NS : MONO_BASE_NS;
    return ns <= base ? 0 : ns - base;
}

int __wrap_pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *t)
{
    if (!g_cur)
        return __real_pthread_mutex_timedlock(m, t);
    point_at(RA, "mutex_timedlock");
    return mutex_acquire(m, abs_to_v(CLOCK_REALTIME, t));
}

int __wrap_pthread_mutex_trylock(pthread_mutex_t *m)
{
    if (!g_cur)
        return __real_pthread_mutex_trylock(m);
    point_at(RA, "mutex_trylock");
    struct lk *l = lk_get(m, L_MUTEX);
    int me = sched_self() + 1;
    if (!l->owner) {
        l->owner = me;
        l->count = 1;
        return 0;
    }
    if (l->owner == me && l->recursive) {
        l->count++;
        return 0;
    }
    return EBUSY;
}

static void mutex_release(pthread_mutex_t *m, const void *where)
{
    struct lk *l = lk_get(m, L_MUTEX);
    if (l->owner != sched_self() + 1)
        sim_fail("thread %d '%s' unlocks mutex %p held by %d (at %p)",
                 sched_self(), g_cur->name, (void *)m, l->owner - 1, where);
    if (--l->count == 0) {
        l->owner = 0;
        wake_all(l->addr);
    }
}

int __wrap_pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (!g_cur)
        return __real_pthread_mutex_unlock(m);
    point_at(RA, "mutex_unlock");
    mutex_release(m, RA);
    return 0;
}

int __wrap_pthread_mutex_destroy(pthread_mutex_t *m)
{
    if (g_cur)
        lk_forget(m);
    return __real_pthread_mutex_destroy(m);
}

static struct rdhold *rd_find(struct lk *l, bool add)
{
    for (int i = 0; i < 16; i++)
        if (g_cur->rd[i].l == l && g_cur->rd[i].n)
            return &g_cur->rd[i];
    if (!add)
        return NULL;
    for (int i = 0; i < 16; i++)
        if (!g_cur->rd[i].n) {
            g_cur->rd[i].l = l;
            return &g_cur->rd[i];
        }
    sim_fail("simulator: thread holds too many read locks");
}

static int rw_acquire(pthread_rwlock_t *rw, bool write, bool try,
                      uint64_t deadline)
{
    int me = sched_self() + 1;
    for (;;) {
        struct lk *l = lk_get(rw, L_RW);
        if (l->owner == me)
            return EDEADLK; /* glibc: the thread holds it for writing */
        if (!write && !l->owner && !(l->prefer_writer && l->wwait)) {
            l->readers++;
            rd_find(l, true)->n++;
            return 0;
        }
        if (write && !l->owner && !l->readers) {
            l->owner = me;
            return 0;
        }
        if (try)
            return EBUSY;
        if (write)
            l->wwait++;
        block_on(l->addr, write ? "rwlock_wrlock" : "rwlock_rdlock", deadline);
        l = lk_get(rw, L_RW);
        if (write)
            l->wwait--;
        if (g_cur->timed_out)
            return ETIMEDOUT;
    }
}

int __wrap_pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    if (!g_cur)
        return __real_pthread_rwlock_rdlock(l);
    point_at(RA, "rwlock_rdlock");
    return rw_acquire(l, false, false, INF);
}

int __wrap_pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    if (!g_cur)
        return __real_pthread_rwlock_wrlock(l);
    point_at(RA, "rwlock_wrlock");
    return rw_acquire(l, true, false, INF);
}

int __wrap_pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    if (!g_cur)
        return __real_pthread_rwlock_tryrdlock(l);
    point_at(RA, "rwlock_tryrdlock");
    return rw_acquire(l, false, true, INF);
}

int __wrap_pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    if (!g_cur)
        return __real_pthread_rwlock_trywrlock(l);
    point_at(RA, "rwlock_trywrlock");
    return rw_acquire(l, true, true, INF);
}

int __real_pthread_rwlock_timedrdlock(pthread_rwlock_t *l,
                                      const struct timespec *t);
int __real_pthread_rwlock_timedwrlock(pthread_rwlock_t *l,
                                      const struct timespec *t);
int __real_pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  clockid_t ck, const struct timespec *t);

int __wrap_pthread_rwlock_timedrdlock(pthread_rwlock_t *l,
                                      const struct timespec *t)
{
    if (!g_cur)
        return __real_pthread_rwlock_timedrdlock(l, t);
    point_at(RA, "rwlock_timedrdlock");
    return rw_acquire(l, false, false, abs_to_v(CLOCK_REALTIME, t));
}

int __wrap_pthread_rwlock_timedwrlock(pthread_rwlock_t *l,
                                      const struct timespec *t)
{
    if (!g_cur)
        return __real_pthread_rwlock_timedwrlock(l, t);
    point_at(RA, "rwlock_timedwrlock");
    return rw_acquire(l, true, false, abs_to_v(CLOCK_REALTIME, t));
}

int __wrap_pthread_rwlock_unlock(pthread_rwlock_t *rw)
{
    if (!g_cur)
        return __real_pthread_rwlock_unlock(rw);
    point_at(RA, "rwlock_unlock");
    struct lk *l = lk_get(rw, L_RW);
    struct rdhold *h;
    if (l->owner == sched_self() + 1) {
        l->owner = 0;
    } else if ((h = rd_find(l, false))) {
        h->n--;
        l->readers--;
    } else {
        sim_fail("thread %d '%s' unlocks rwlock %p it does not hold (at %p; "
                 "writer %d, %d readers)",
                 sched_self(), g_cur->name, (void *)rw, RA, l->owner - 1,
                 l->readers);
    }
    wake_all(l->addr);
    return 0;
}

int __real_pthread_rwlock_init(pthread_rwlock_t *l,
                               const pthread_rwlockattr_t *a);

/* The kind (reader- or writer-preferring) comes from the attributes. */
int __wrap_pthread_rwlock_init(pthread_rwlock_t *rw,
                               const pthread_rwlockattr_t *a)
{
    int r = __real_pthread_rwlock_init(rw, a);
    if (g_cur) {
        lk_forget(rw);
        struct lk *l = lk_get(rw, L_RW);
        int kind = PTHREAD_RWLOCK_PREFER_READER_NP;
        if (a)
            pthread_rwlockattr_getkind_np(a, &kind);
        l->prefer_writer = kind != PTHREAD_RWLOCK_PREFER_READER_NP;
    }
    return r;
}

int __wrap_pthread_rwlock_destroy(pthread_rwlock_t *l)
{
    if (g_cur)
        lk_forget(l);
    return __real_pthread_rwlock_destroy(l);
}

int __wrap_pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *a)
{
    int r = __real_pthread_cond_init(c, a);
    if (g_cur) {
        lk_forget(c);
        struct lk *l = lk_get(c, L_COND);
        clockid_t ck = CLOCK_REALTIME;
        if (a)
            pthread_condattr_getclock(a, &ck);
        l->clock = ck;
    }
    return r;
}

int __wrap_pthread_cond_destroy(pthread_cond_t *c)
{
    if (g_cur)
        lk_forget(c);
    return __real_pthread_cond_destroy(c);
}

static int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline,
                     const void *where)
{
    struct lk *ml = lk_get(m, L_MUTEX);
    struct lk *cl = lk_get(c, L_COND);
    g_cur->where = where;
    if (ml->owner != sched_self() + 1 || ml->count != 1)
        sim_fail("thread %d '%s' waits on cond %p without holding mutex %p "
                 "exactly once (at %p)",
                 sched_self(), g_cur->name, (void *)c, (void *)m, where);
    ml->owner = 0;
    ml->count = 0;
    wake_all(ml->addr);
    block_on(cl->addr, "cond_wait", deadline);
    int to = g_cur->timed_out && !g_cur->signalled;
    mutex_acquire(m, INF);
    return to ? ETIMEDOUT : 0;
}

int __wrap_pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    if (!g_cur)
        return __real_pthread_cond_wait(c, m);
    return cond_wait(c, m, INF, RA);
}

int __wrap_pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  const struct timespec *t)
{
    if (!g_cur)
        return __real_pthread_cond_timedwait(c, m, t);
    return cond_wait(c, m, abs_to_v(lk_get(c, L_COND)->clock, t), RA);
}

int __wrap_pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  clockid_t ck, const struct timespec *t)
{
    if (!g_cur)
        return __real_pthread_cond_clockwait(c, m, ck, t);
    return cond_wait(c, m, abs_to_v(ck, t), RA);
}

int __wrap_pthread_cond_signal(pthread_cond_t *c)
{
    if (!g_cur)
        return __real_pthread_cond_signal(c);
    point_at(RA, "cond_signal");
    struct lk *l = lk_get(c, L_COND);
    int w[SIM_MAX_THREADS], n = 0;
    for (int i = 0; i < g_nth; i++)
        if (g_th[i].state == T_BLK && g_th[i].wait_obj == l->addr)
            w[n++] = i;
    if (n) {
        struct th *t = &g_th[w[rng_below(&g_rng, n)]];
        t->state = T_RUN;
        t->signalled = 1;
    }
    return 0;
}

int __wrap_pthread_cond_broadcast(pthread_cond_t *c)
{
    if (!g_cur)
        return __real_pthread_cond_broadcast(c);
    point_at(RA, "cond_broadcast");
    wake_all(lk_get(c, L_COND)->addr);
    return 0;
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg)
{
    if (!g_cur)
        return __real_pthread_create(t, a, fn, arg);
    int id = sched_spawn("lib", fn, arg);
    *t = (pthread_t)(id + 1);
    point_at(RA, "pthread_create");
    return 0;
}

int __wrap_pthread_join(pthread_t t, void **ret)
{
    if (!g_cur)
        return __real_pthread_join(t, ret);
    g_cur->where = RA;
    if (ret)
        *ret = NULL;
    sched_join((int)t - 1);
    return 0;
}

int __wrap_pthread_detach(pthread_t t)
{
    if (!g_cur)
        return __real_pthread_detach(t);
    return 0;
}

pthread_t __wrap_pthread_self(void)
{
    if (!g_cur)
        return __real_pthread_self();
    return (pthread_t)(sched_self() + 1);
}

int __wrap_sched_yield(void)
{
    if (!g_cur)
        return __real_sched_yield();
    point_at(RA, "sched_yield");
    return 0;
}

/* ---- time ---- */
int __wrap_usleep(useconds_t us)
{
    if (!g_cur)
        return __real_usleep(us);
    g_cur->where = RA;
    block_on(NULL, "usleep", g_now + (uint64_t)us * 1000);
    return 0;
}

int __wrap_nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!g_cur)
        return __real_nanosleep(req, rem);
    g_cur->where = RA;
    block_on(NULL, "nanosleep",
             g_now + (uint64_t)req->tv_sec * 1000000000ull + req->tv_nsec);
    return 0;
}

int __wrap_clock_nanosleep(clockid_t c, int flags, const struct timespec *req,
                           struct timespec *rem)
{
    if (!g_cur)
        return __real_clock_nanosleep(c, flags, req, rem);
    g_cur->where = RA;
    uint64_t dl = (flags & TIMER_ABSTIME)
                      ? abs_to_v(c, req)
                      : g_now + (uint64_t)req->tv_sec * 1000000000ull +
                            req->tv_nsec;
    block_on(NULL, "clock_nanosleep", dl);
    return 0;
}

unsigned __wrap_sleep(unsigned s)
{
    if (!g_cur)
        return __real_sleep(s);
    g_cur->where = RA;
    block_on(NULL, "sleep", g_now + (uint64_t)s * 1000000000ull);
    return 0;
}

int __wrap_clock_gettime(clockid_t c, struct timespec *ts)
{
    if (!g_sim_active || c == CLOCK_PROCESS_CPUTIME_ID ||
        c == CLOCK_THREAD_CPUTIME_ID)
        return __real_clock_gettime(c, ts);
    uint64_t ns = g_now + (c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE
                               ? RT_BASE_NS
                               : MONO_BASE_NS);
    ts->tv_sec = ns / 1000000000ull;
    ts->tv_nsec = ns % 1000000000ull;
    return 0;
}

time_t __wrap_time(time_t *t)
{
    if (!g_sim_active)
        return __real_time(t);
    time_t v = (time_t)((g_now + RT_BASE_NS) / 1000000000ull);
    if (t)
        *t = v;
    return v;
}

int __wrap_gettimeofday(struct timeval *tv, void *tz)
{
    if (!g_sim_active)
        return __real_gettimeofday(tv, tz);
    uint64_t ns = g_now + RT_BASE_NS;
    tv->tv_sec = ns / 1000000000ull;
    tv->tv_usec = ns % 1000000000ull / 1000;
    return 0;
}
