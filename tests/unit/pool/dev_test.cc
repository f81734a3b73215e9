// Unit tests for pool/dev.c: the local device driver (flush generations, bounce buffers).
// Shared fixtures: tests/unit/pool_fixture.h.
#include "tests/unit/pool_fixture.h"

using namespace vdtest_pool;

namespace {

struct FlushCall {
    struct vd_dev *d;
    int rc = 1;
    bool done = false;
    pthread_t t;
    static void *Run(void *a)
    {
        auto *f = (FlushCall *)a;
        int r = vd_dev_flush(f->d);
        __atomic_store_n(&f->rc, r, __ATOMIC_RELEASE);
        __atomic_store_n(&f->done, true, __ATOMIC_RELEASE);
        return nullptr;
    }
    void Start(struct vd_dev *dev)
    {
        d = dev;
        pthread_create(&t, nullptr, Run, this);
    }
    bool Done() { return __atomic_load_n(&done, __ATOMIC_ACQUIRE); }
};

uint32_t FlushWaiters(struct vd_dev *d)
{
    pthread_mutex_lock(&d->flush_lock);
    uint32_t n = d->flush_waiters;
    pthread_mutex_unlock(&d->flush_lock);
    return n;
}

// Defect 6: the second of two concurrent flushes returned 0 while the
// first was still inside fdatasync (touched was reset before it).  Now it
// waits for that flush and shares its result: a failed flush fails both,
// and the next flush does the work again.
TEST_F(PoolTest, Flush_SecondFlushWaitsForRunningOneAndSharesItsFailure)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    struct vd_dev *d = &p->devs[0];
    Gate *g = Wrap(p, 0);
    char buf[4096] = "data";
    ASSERT_EQ(vd_dev_pwrite(d, buf, sizeof(buf), d->data_offset, 0), 0);
    g->hold_flush = true;
    g->flush_err = -EIO;
    FlushCall f1, f2;
    f1.Start(d);
    ASSERT_TRUE(WaitFor([&] { return Locked(g, &Gate::held) == 1; }));
    f2.Start(d);
    // f2 must wait for f1 (deterministic: either it returned, the bug, or
    // it is counted as a waiter)
    ASSERT_TRUE(WaitFor([&] { return f2.Done() || FlushWaiters(d) == 1; }));
    EXPECT_FALSE(f2.Done()) << "second flush returned " << f2.rc
                            << " while the first was still running";
    Release(g);
    pthread_join(f1.t, nullptr);
    pthread_join(f2.t, nullptr);
    EXPECT_EQ(f1.rc, -EIO);
    EXPECT_EQ(f2.rc, -EIO);
    EXPECT_EQ(Locked(g, &Gate::flushes), 1); // shared, not repeated
    pthread_mutex_lock(&g->mu);
    g->hold_flush = false;
    g->flush_err = 0;
    pthread_mutex_unlock(&g->mu);
    EXPECT_EQ(vd_dev_flush(d), 0); // retried: the data is still not durable
    EXPECT_EQ(Locked(g, &Gate::flushes), 2);
    EXPECT_EQ(vd_dev_flush(d), 0); // nothing written since: no I/O
    EXPECT_EQ(Locked(g, &Gate::flushes), 2);
    vd_pool_close(p);
}

// Defect 6: a flush running when a write completes does not cover it; the
// caller who saw the write complete gets a flush of its own.
TEST_F(PoolTest, Flush_WriteAfterRunningFlushStartedGetsItsOwnFlush)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    struct vd_dev *d = &p->devs[0];
    Gate *g = Wrap(p, 0);
    char buf[4096] = "data";
    ASSERT_EQ(vd_dev_pwrite(d, buf, sizeof(buf), d->data_offset, 0), 0);
    g->hold_flush = true;
    FlushCall f1, f2;
    f1.Start(d);
    ASSERT_TRUE(WaitFor([&] { return Locked(g, &Gate::held) == 1; }));
    ASSERT_EQ(vd_dev_pwrite(d, buf, sizeof(buf), d->data_offset + 4096, 0), 0);
    f2.Start(d);
    ASSERT_TRUE(WaitFor([&] { return f2.Done() || FlushWaiters(d) == 1; }));
    EXPECT_FALSE(f2.Done());
    pthread_mutex_lock(&g->mu);
    g->hold_flush = false; // f2's own flush is not held
    g->release = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(f1.t, nullptr);
    pthread_join(f2.t, nullptr);
    EXPECT_EQ(f1.rc, 0);
    EXPECT_EQ(f2.rc, 0);
    EXPECT_EQ(Locked(g, &Gate::flushes), 2);
    vd_pool_close(p);
}

struct WriteCall {
    struct vd_dev *d;
    std::vector<char> data;
    uint64_t off;
    int rc = 1;
    bool done = false;
    pthread_t t;
    static void *Run(void *a)
    {
        auto *w = (WriteCall *)a;
        int r = vd_dev_pwrite(w->d, w->data.data(), w->data.size(), w->off, 0);
        __atomic_store_n(&w->rc, r, __ATOMIC_RELEASE);
        __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
        return nullptr;
    }
    void Start() { pthread_create(&t, nullptr, Run, this); }
    bool Done() { return __atomic_load_n(&done, __ATOMIC_ACQUIRE); }
};

// Defect 17: two short writes into one 512-byte block of a block-only
// device (bounced: read the block, patch, write) lost the first patch.
TEST_F(PoolTest, Bounce_TwoShortWritesToOneBlock_BothLand)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    struct vd_dev *d = &p->devs[0];
    Gate *g = Wrap(p, 0); // not the file driver: short requests bounce
    uint64_t blk = d->data_offset + 8192;
    std::vector<char> zero(512, 0);
    ASSERT_EQ(vd_dev_pwrite(d, zero.data(), 512, blk, 0), 0);
    WriteCall a, b;
    a.d = b.d = d;
    a.data.assign(100, 'A');
    a.off = blk;
    b.data.assign(100, 'B');
    b.off = blk + 200;
    g->hold_read = true; // A's read of the block is held
    a.Start();
    ASSERT_TRUE(WaitFor([&] { return Locked(g, &Gate::held) == 1; }));
    b.Start();
    // B either overtakes A (the bug: it reads, patches and writes the
    // block) or waits for A's read-modify-write.
    ASSERT_TRUE(WaitFor([&] {
        pthread_mutex_lock(&d->rmw_lock);
        bool w = d->rmw_waiters == 1;
        pthread_mutex_unlock(&d->rmw_lock);
        return w || b.Done();
    }));
    Release(g);
    pthread_join(a.t, nullptr);
    pthread_join(b.t, nullptr);
    EXPECT_EQ(a.rc, 0);
    EXPECT_EQ(b.rc, 0);
    std::vector<char> back(512);
    ASSERT_EQ(vd_dev_pread(d, back.data(), 512, blk), 0);
    EXPECT_EQ(std::string(back.data(), 100), std::string(100, 'A'));
    EXPECT_EQ(std::string(back.data() + 200, 100), std::string(100, 'B'));
    EXPECT_EQ(std::string(back.data() + 100, 100), std::string(100, '\0'));
    vd_pool_close(p);
}

} // namespace
