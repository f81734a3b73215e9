// Shared fixtures of the pool unit tests (tests/unit/pool/*_test.cc, one
// file per pool/ source file): the PoolTest fixture (a pool of three
// 64 MiB files) and a gating device wrapper (Gate, Wrap, WaitFor, Locked,
// Release) used by the device and volume tests.  Everything has external
// linkage (inline) in namespace vdtest_pool, so that every test file's
// TEST_F(PoolTest, ...) uses the one fixture class, as gtest requires of a
// test suite spread over several files.
#ifndef VDLVM_TESTS_UNIT_POOL_FIXTURE_H
#define VDLVM_TESTS_UNIT_POOL_FIXTURE_H

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "pool/pool_int.h"

namespace vdtest_pool {

class PoolTest : public ::testing::Test {
  protected:
    std::string dir;
    struct vd_conf_pool conf {};
    std::vector<struct vd_conf_dev> devs;
    std::vector<std::string> paths;
    std::vector<std::string> names;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-pool-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", dir.c_str(), 1);
        vd_log_set_fn(quiet_log);
        Define(3, 64ull << 20);
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
        vd_log_set_fn(nullptr);
    }
    inline static std::vector<std::string> log_lines;
    static void quiet_log(int level, const char *msg)
    {
        if (level <= VD_LOG_WARN)
            log_lines.push_back(msg);
    }
    void Define(int n, uint64_t size)
    {
        devs.assign(n, {});
        paths.clear();
        names.clear();
        for (int i = 0; i < n; i++) {
            paths.push_back(dir + "/d" + std::to_string(i) + ".img");
            names.push_back("d" + std::to_string(i));
        }
        for (int i = 0; i < n; i++) {
            devs[i].name = (char *)names[i].c_str();
            devs[i].path = (char *)paths[i].c_str();
            devs[i].size = size;
            devs[i].node = (char *)"nodea";
        }
        conf.file = (char *)"test.yaml";
        conf.name = (char *)"pool0";
        conf.extent_size = 4ull << 20;
        conf.ndevs = n;
        conf.devs = devs.data();
    }
    vd_pool *Open()
    {
        vd_pool *p = nullptr;
        EXPECT_EQ(vd_pool_open(&conf, &p), 0);
        return p;
    }
    // Byte offset on device `dev` of pool byte `off` of volume name.
    void CorruptMd(int dev, uint64_t at)
    {
        int fd = open(paths[dev].c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        uint8_t b;
        ASSERT_EQ(pread(fd, &b, 1, VD_MD_OFFSET + at), 1);
        b ^= 0x5a;
        ASSERT_EQ(pwrite(fd, &b, 1, VD_MD_OFFSET + at), 1);
        close(fd);
    }
};

// A device wrapper that can hold a call until the test releases it, fail
// flushes, and count calls.  Bounded waits only (Wait* give up after 10 s).
struct Gate {
    struct vd_bdev b;
    struct vd_bdev *inner;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    bool hold_flush = false, hold_read = false, hold_write = false;
    int flush_err = 0;      // returned by held flushes when released
    int flushes = 0, reads = 0, writes = 0, zeros = 0; // calls entered
    int held = 0;           // calls waiting at the gate
    bool release = false;
    bool no_zero = false;   // the zero op answers -EOPNOTSUPP
    std::string events;     // 'z' zero, 'f' flush, 'W' FUA write, in order
    int relay_ms = 0;       // >0: a write waits (at most this long) for the
                            // next write to enter, so writes overlap
    void Hold()             // called with mu held
    {
        held++;
        pthread_cond_broadcast(&cv);
        while (!release)
            pthread_cond_wait(&cv, &mu);
        held--;
    }
};
inline int gate_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *g = (Gate *)b;
    int r = g->inner->ops->pread(g->inner, buf, len, off);
    pthread_mutex_lock(&g->mu);
    g->reads++;
    pthread_cond_broadcast(&g->cv);
    if (g->hold_read) {
        g->hold_read = false; // only the first read is held, after reading
        g->Hold();
    }
    pthread_mutex_unlock(&g->mu);
    return r;
}
inline int gate_pwrite(struct vd_bdev *b, const void *buf, size_t len, uint64_t off, unsigned fl)
{
    auto *g = (Gate *)b;
    pthread_mutex_lock(&g->mu);
    int ticket = ++g->writes;
    if (fl & VD_IO_FUA)
        g->events.push_back('W');
    pthread_cond_broadcast(&g->cv);
    if (g->hold_write)
        g->Hold();
    if (g->relay_ms) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += g->relay_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (g->writes == ticket &&
               pthread_cond_timedwait(&g->cv, &g->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&g->mu);
    return g->inner->ops->pwrite(g->inner, buf, len, off, fl);
}
inline int gate_flush(struct vd_bdev *b)
{
    auto *g = (Gate *)b;
    int err = 0;
    pthread_mutex_lock(&g->mu);
    g->flushes++;
    g->events.push_back('f');
    pthread_cond_broadcast(&g->cv);
    if (g->hold_flush)
        g->Hold();
    err = g->flush_err;
    pthread_mutex_unlock(&g->mu);
    return err ? err : g->inner->ops->flush(g->inner);
}
inline int gate_zero(struct vd_bdev *b, uint64_t off, uint64_t len)
{
    auto *g = (Gate *)b;
    pthread_mutex_lock(&g->mu);
    g->zeros++;
    g->events.push_back('z');
    bool none = g->no_zero;
    pthread_mutex_unlock(&g->mu);
    if (none || !g->inner->ops->zero)
        return -EOPNOTSUPP;
    return g->inner->ops->zero(g->inner, off, len);
}
inline void gate_close(struct vd_bdev *b)
{
    auto *g = (Gate *)b;
    g->inner->ops->close(g->inner);
    delete g;
}
inline const struct vd_bdev_ops gate_ops = { "gate", gate_pread, gate_pwrite, gate_flush,
                                      gate_close, nullptr, nullptr, gate_zero, nullptr };

inline Gate *Wrap(vd_pool *p, uint32_t i)
{
    auto *g = new Gate;
    g->inner = p->devs[i].bdev;
    g->b = *g->inner;
    g->b.ops = &gate_ops;
    p->devs[i].bdev = &g->b;
    return g;
}

// Waits (bounded) until pred() holds, polling every millisecond.
template <class F> bool WaitFor(F pred)
{
    for (int i = 0; i < 10000; i++) {
        if (pred())
            return true;
        usleep(1000);
    }
    return pred();
}

inline int Locked(Gate *g, int Gate::*field)
{
    pthread_mutex_lock(&g->mu);
    int v = g->*field;
    pthread_mutex_unlock(&g->mu);
    return v;
}

inline void Release(Gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->release = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

} // namespace vdtest_pool

#endif
