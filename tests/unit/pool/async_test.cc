// Unit tests for vd_vol_submit (pool/vol.c, pool/linear.c): asynchronous
// volume I/O split at extent boundaries, the first error winning, -EAGAIN
// before anything started, and a mapping change (extent move) waiting for
// a request in flight.  The test thread acts as the event loop
// (vd_async_set_external) and polls; the devices' submit op is wrapped so
// that a test can count, refuse, hold and complete the pieces itself.
#include "tests/unit/pool_fixture.h"

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

extern "C" {
#include "pool/stats.h"
#include "pool/uring.h"
}

using namespace vdtest_pool;

namespace
{

const uint64_t kEs = 4ull << 20;

struct Hold {
    Hold()
    {
        __atomic_store_n(&g_move_test_hold, true, __ATOMIC_RELEASE);
    }
    ~Hold()
    {
        __atomic_store_n(&g_move_test_hold, false, __ATOMIC_RELEASE);
    }
};

// This thread is the event loop while it lives.
struct Loop {
    Loop()
    {
        vd_async_set_external(true);
    }
    ~Loop()
    {
        vd_async_drain();
        vd_async_set_external(false);
    }
};

// The wrapped submit op of every device of a pool.
struct Fake {
    std::mutex m;
    std::vector<struct vd_bio *> held;
    std::vector<std::pair<int, uint64_t>> seen; // (op, device offset)
    int submits = 0;
    int eagain_at = -1; // this submit (0-based) returns -EAGAIN
    bool hold = false;  // keep the pieces; the test completes them
    const struct vd_bdev_ops *real = nullptr;
    struct vd_bdev_ops ops {
    };
};
Fake *g_fake;

// The fake's pread is not the file driver's: vd_dev_async_ok takes the
// device for a remote one (where the asynchronous path pays).
int FakePread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    return g_fake->real->pread(b, buf, len, off);
}

int FakeSubmit(struct vd_bdev *b, struct vd_bio *bio)
{
    Fake *f = g_fake;
    {
        std::lock_guard<std::mutex> g(f->m);
        int n = f->submits++;
        if (n == f->eagain_at)
            return -EAGAIN;
        f->seen.push_back({ bio->op, bio->off });
        if (f->hold) {
            f->held.push_back(bio);
            return 0;
        }
    }
    return f->real->submit ? f->real->submit(b, bio) : -EAGAIN;
}

void Wrap(vd_pool *p, Fake *f)
{
    g_fake = f;
    f->real = p->devs[0].bdev->ops;
    f->ops = *f->real;
    f->ops.submit = FakeSubmit;
    f->ops.pread = FakePread;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].bdev)
            p->devs[i].bdev->ops = &f->ops;
}

void Unwrap(vd_pool *p, Fake *f)
{
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].bdev)
            p->devs[i].bdev->ops = f->real;
}

// Complete a held piece from another thread (done never runs on the
// submitter's stack).
void Complete(struct vd_bio *bio, int r)
{
    std::thread([bio, r] { bio->done(bio, r); }).join();
}

struct Req {
    struct vd_vol_bio vb {
    };
    std::atomic<int> ndone{ 0 };
    std::atomic<int> result{ 1 };
};

void ReqDone(struct vd_vol_bio *vb, int r)
{
    Req *q = (Req *)vb->priv;
    q->result = r;
    q->ndone++;
}

void Prep(Req &q, int op, void *buf, size_t len, uint64_t off)
{
    q.vb.op = op;
    q.vb.buf = buf;
    q.vb.len = len;
    q.vb.off = off;
    q.vb.done = ReqDone;
    q.vb.priv = &q;
}

bool PollUntil(std::function<bool()> ok, int ms = 5000)
{
    for (int i = 0; i < ms; i++) {
        vd_async_poll();
        if (ok())
            return true;
        usleep(1000);
    }
    return false;
}

std::vector<char> Pattern(uint64_t seed, size_t n)
{
    std::vector<char> b(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(seed * 131 + i * 7 + (i >> 12));
    return b;
}

// Is map_lock free of readers (a writer could take it now)?
bool MapLockFree(vd_vol *v)
{
    if (pthread_rwlock_trywrlock(&v->map_lock))
        return false;
    pthread_rwlock_unlock(&v->map_lock);
    return true;
}

// Sum of the pool's device error counters (vd_pool_dev_get_counters).
struct Errs {
    uint64_t r = 0, w = 0, f = 0;
};
Errs DevErrors(vd_pool *p)
{
    Errs e;
    for (uint32_t i = 0; i < p->ndevs; i++) {
        struct vd_dev_counters c;
        EXPECT_EQ(vd_pool_dev_get_counters(p, i, &c), 0);
        e.r += c.read_errors;
        e.w += c.write_errors;
        e.f += c.flush_errors;
    }
    return e;
}

} // namespace

TEST_F(PoolTest, Async_NoEventLoop_Refused)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> buf(4096);
    Req q;
    Prep(q, VD_VOL_READ, buf.data(), 4096, 0);
    EXPECT_EQ(vd_vol_submit(v, &q.vb), -EAGAIN);
    EXPECT_EQ(q.ndone.load(), 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Async_WriteAcrossExtents_SplitAtBoundary_ReadsBack)
{
    Loop loop;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 16ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    Fake f;
    Wrap(p, &f);
    // 8 KiB before the first boundary, 4 MiB over the second one: 3 pieces
    const uint64_t off = kEs - 8192, len = kEs + 16384;
    std::vector<char> w = Pattern(7, len);
    Req q;
    Prep(q, VD_VOL_WRITE, w.data(), len, off);
    int r = vd_vol_submit(v, &q.vb);
    if (r == -EAGAIN)
        GTEST_SKIP() << "io_uring unavailable here";
    ASSERT_EQ(r, 0);
    ASSERT_TRUE(PollUntil([&] { return q.ndone.load() == 1; }));
    EXPECT_EQ(q.result.load(), 0);
    ASSERT_EQ(f.seen.size(), 3u);
    // each piece at its extent's device offset
    uint64_t at[3] = { off, kEs, 2 * kEs };
    for (int i = 0; i < 3; i++) {
        uint64_t doff = 0;
        ASSERT_NE(vd_leg_locate(v, 0, at[i], &doff), nullptr);
        EXPECT_EQ(f.seen[i].second, doff) << i;
    }
    EXPECT_TRUE(MapLockFree(v)); // released on completion
    EXPECT_EQ(vd_async_inflight(), 0u);
    std::vector<char> got(len);
    ASSERT_EQ(vd_vol_pread(v, got.data(), len, off), 0);
    EXPECT_EQ(got, w);
    // and an async read of the same range
    std::vector<char> rd(len);
    Req q2;
    Prep(q2, VD_VOL_READ, rd.data(), len, off);
    ASSERT_EQ(vd_vol_submit(v, &q2.vb), 0);
    ASSERT_TRUE(PollUntil([&] { return q2.ndone.load() == 1; }));
    EXPECT_EQ(q2.result.load(), 0);
    EXPECT_EQ(rd, w);
    // a flush: one piece per device written since its last good flush
    uint32_t dev0 = v->map[0].dev;
    uint64_t gen = __atomic_load_n(&p->devs[dev0].wgen, __ATOMIC_ACQUIRE);
    Req q3;
    Prep(q3, VD_VOL_FLUSH, nullptr, 0, 0);
    ASSERT_EQ(vd_vol_submit(v, &q3.vb), 0);
    ASSERT_TRUE(PollUntil([&] { return q3.ndone.load() == 1; }));
    EXPECT_EQ(q3.result.load(), 0);
    EXPECT_GE(p->devs[dev0].flushed_gen, gen);
    // a second flush has nothing to do: no piece
    size_t pieces = f.seen.size();
    Req q4;
    Prep(q4, VD_VOL_FLUSH, nullptr, 0, 0);
    ASSERT_EQ(vd_vol_submit(v, &q4.vb), 0);
    ASSERT_TRUE(PollUntil([&] { return q4.ndone.load() == 1; }));
    EXPECT_EQ(q4.result.load(), 0);
    EXPECT_EQ(f.seen.size(), pieces);
    Unwrap(p, &f);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Async_OnePieceFails_FirstErrorWins_DoneOnce)
{
    Loop loop;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 16ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    Fake f;
    f.hold = true;
    Wrap(p, &f);
    std::vector<char> buf(kEs + 8192);
    Req q;
    Prep(q, VD_VOL_READ, buf.data(), buf.size(), kEs - 4096);
    ASSERT_EQ(vd_vol_submit(v, &q.vb), 0);
    ASSERT_EQ(f.held.size(), 3u);
    EXPECT_FALSE(MapLockFree(v)); // held while pieces are in flight
    Complete(f.held[0], 0);
    Complete(f.held[1], -EIO);
    PollUntil([&] { return false; }, 20);
    EXPECT_EQ(q.ndone.load(), 0); // one piece still out
    Complete(f.held[2], -ETIMEDOUT);
    ASSERT_TRUE(PollUntil([&] { return q.ndone.load() == 1; }));
    EXPECT_EQ(q.result.load(), -EIO);
    PollUntil([&] { return false; }, 20);
    EXPECT_EQ(q.ndone.load(), 1);
    EXPECT_TRUE(MapLockFree(v));
    // both failed pieces counted in their devices' read errors
    Errs e = DevErrors(p);
    EXPECT_EQ(e.r, 2u);
    EXPECT_EQ(e.w, 0u);
    Unwrap(p, &f);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Async_Eagain_FirstPieceNothingStarted_LaterPieceRedo)
{
    Loop loop;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 16ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    Fake f;
    f.hold = true;
    f.eagain_at = 0;
    Wrap(p, &f);
    std::vector<char> buf(8192);
    Req q;
    Prep(q, VD_VOL_WRITE, buf.data(), 8192, kEs - 4096);
    // the first piece is refused: nothing started, no done, locks free
    EXPECT_EQ(vd_vol_submit(v, &q.vb), -EAGAIN);
    EXPECT_TRUE(f.held.empty());
    EXPECT_TRUE(MapLockFree(v));
    EXPECT_EQ(pthread_rwlock_trywrlock(&v->write_lock), 0);
    pthread_rwlock_unlock(&v->write_lock);
    EXPECT_EQ(vd_async_inflight(), 0u);
    // the second piece is refused after the first started: done says
    // -EAGAIN (redo synchronously) once the first has ended
    f.submits = 0;
    f.eagain_at = 1;
    ASSERT_EQ(vd_vol_submit(v, &q.vb), 0);
    ASSERT_EQ(f.held.size(), 1u);
    PollUntil([&] { return false; }, 20);
    EXPECT_EQ(q.ndone.load(), 0);
    Complete(f.held[0], 0);
    ASSERT_TRUE(PollUntil([&] { return q.ndone.load() == 1; }));
    EXPECT_EQ(q.result.load(), -EAGAIN);
    EXPECT_TRUE(MapLockFree(v));
    // a thin volume, a compare-and-write holding write_lock: -EAGAIN
    f.eagain_at = -1;
    pthread_rwlock_wrlock(&v->write_lock);
    Req q2;
    Prep(q2, VD_VOL_WRITE, buf.data(), 4096, 0);
    EXPECT_EQ(vd_vol_submit(v, &q2.vb), -EAGAIN);
    pthread_rwlock_unlock(&v->write_lock);
    Unwrap(p, &f);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Async_MoveBeginWaitsForWriteInFlight_NewSubmitsRefused)
{
    Hold hold;
    Loop loop;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> base = Pattern(1, kEs);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), kEs, 0, 0), 0);
    Fake f;
    f.hold = true;
    Wrap(p, &f);
    std::vector<char> w = Pattern(2, 65536);
    Req q;
    Prep(q, VD_VOL_WRITE, w.data(), w.size(), 4096);
    ASSERT_EQ(vd_vol_submit(v, &q.vb), 0);
    ASSERT_EQ(f.held.size(), 1u);
    // the move's BEGIN apply takes map_lock exclusive: it must wait
    std::atomic<int> moved{ 1 };
    std::thread mover(
        [&] { moved = vd_move_extent(p, "vol0", 0, 0, nullptr, 0); });
    usleep(200000);
    EXPECT_EQ(moved.load(), 1) << "the move began under a write in flight";
    // with the mover waiting, a new request is refused, not queued
    Req q2;
    std::vector<char> r2(4096);
    Prep(q2, VD_VOL_READ, r2.data(), 4096, 0);
    EXPECT_EQ(vd_vol_submit(v, &q2.vb), -EAGAIN);
    // the piece lands (really written), then completes
    uint64_t doff = 0;
    struct vd_dev *d = vd_leg_locate(v, 0, 4096, &doff);
    ASSERT_NE(d, nullptr);
    ASSERT_EQ(f.real->pwrite(d->bdev, w.data(), w.size(), doff, 0), 0);
    Complete(f.held[0], 0);
    EXPECT_EQ(moved.load(), 1); // still: the lock goes on the loop's poll
    ASSERT_TRUE(PollUntil([&] { return q.ndone.load() == 1; }));
    EXPECT_EQ(q.result.load(), 0);
    mover.join();
    EXPECT_EQ(moved.load(), 0);
    // a write to the moving extent now needs the mover's hook: synchronous
    f.hold = false;
    Req q3;
    Prep(q3, VD_VOL_WRITE, w.data(), 4096, 0);
    EXPECT_EQ(vd_vol_submit(v, &q3.vb), -EAGAIN);
    Unwrap(p, &f);
    // finish the move: the async write is on the new device
    int r = 1, rounds = 0;
    while (r == 1 && rounds++ < 200)
        r = vd_move_run(p, 1000000000LL, 1 << 20);
    ASSERT_EQ(r, 0);
    std::vector<char> got(w.size());
    ASSERT_EQ(vd_vol_pread(v, got.data(), got.size(), 4096), 0);
    EXPECT_EQ(got, w);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Buffered local files keep the thread path (the async one is slower on
// them, bench/results/async-*.md) unless VDLVM_ASYNC=all turns it on.
TEST_F(PoolTest, Async_BufferedLocalFile_NotEligible_UnlessAll)
{
    Loop loop;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> w = Pattern(3, 8192);
    Req q;
    Prep(q, VD_VOL_WRITE, w.data(), w.size(), 4096);
    vd_async_set_local(false);
    EXPECT_FALSE(vd_dev_async_ok(&p->devs[v->map[0].dev], 0, 4096,
                                 VD_BIO_READ));
    EXPECT_EQ(vd_vol_submit(v, &q.vb), -EAGAIN);
    EXPECT_TRUE(MapLockFree(v));
    EXPECT_EQ(vd_async_inflight(), 0u);
    vd_async_set_local(true);
    int r = vd_vol_submit(v, &q.vb);
    vd_async_set_local(false);
    if (r == -EAGAIN)
        GTEST_SKIP() << "io_uring unavailable here";
    ASSERT_EQ(r, 0);
    ASSERT_TRUE(PollUntil([&] { return q.ndone.load() == 1; }));
    EXPECT_EQ(q.result.load(), 0);
    std::vector<char> got(w.size());
    ASSERT_EQ(vd_vol_pread(v, got.data(), got.size(), 4096), 0);
    EXPECT_EQ(got, w);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Issue 15's leftover: failures on the asynchronous device path count in
// the device's error counters (read, write, flush), as the synchronous
// path's do; a piece ended with -EAGAIN (redone synchronously) does not.
TEST_F(PoolTest, Async_DeviceErrors_CountedPerOp)
{
    Loop loop;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 4ull << 20, nullptr), 0); // one device
    vd_vol *v = vd_vol_open(p, "vol0");
    Fake f;
    f.hold = true;
    Wrap(p, &f);
    std::vector<char> buf(4096);
    Errs e0 = DevErrors(p);
    Req qw;
    Prep(qw, VD_VOL_WRITE, buf.data(), 4096, 0);
    ASSERT_EQ(vd_vol_submit(v, &qw.vb), 0);
    ASSERT_EQ(f.held.size(), 1u);
    Complete(f.held[0], -ECONNRESET);
    ASSERT_TRUE(PollUntil([&] { return qw.ndone.load() == 1; }));
    EXPECT_EQ(qw.result.load(), -EIO);
    // a flush with the failed write's device dirty: one piece, failing
    ASSERT_EQ(vd_vol_pwrite(v, buf.data(), 4096, 0, 0), 0);
    Req qf;
    Prep(qf, VD_VOL_FLUSH, nullptr, 0, 0);
    ASSERT_EQ(vd_vol_submit(v, &qf.vb), 0);
    ASSERT_EQ(f.held.size(), 2u);
    Complete(f.held[1], -ETIMEDOUT);
    ASSERT_TRUE(PollUntil([&] { return qf.ndone.load() == 1; }));
    EXPECT_EQ(qf.result.load(), -EIO);
    // -EAGAIN from the driver: not an error
    Req qr;
    Prep(qr, VD_VOL_READ, buf.data(), 4096, 0);
    ASSERT_EQ(vd_vol_submit(v, &qr.vb), 0);
    ASSERT_EQ(f.held.size(), 3u);
    Complete(f.held[2], -EAGAIN);
    ASSERT_TRUE(PollUntil([&] { return qr.ndone.load() == 1; }));
    EXPECT_EQ(qr.result.load(), -EAGAIN);
    Errs e1 = DevErrors(p);
    EXPECT_EQ(e1.w - e0.w, 1u);
    EXPECT_EQ(e1.f - e0.f, 1u);
    EXPECT_EQ(e1.r - e0.r, 0u);
    Unwrap(p, &f);
    vd_vol_close(v);
    vd_pool_close(p);
}
