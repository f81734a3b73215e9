// Unit tests for pool/vol.c: the volume API (create, extend, remove, flush, compare-and-write, zeroing new extents).
// Shared fixtures: tests/unit/pool_fixture.h.
#include "tests/unit/pool_fixture.h"

using namespace vdtest_pool;

namespace {

TEST_F(PoolTest, Extend_WhileOpen_NewSizeVisibleAndWritable)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    EXPECT_EQ(vd_vol_extend(p, "vol0", 4ull << 20), -EINVAL);
    ASSERT_EQ(vd_vol_extend(p, "vol0", 20ull << 20), 0);
    EXPECT_EQ(vd_vol_size(v), 20ull << 20);
    char buf[4096] = "hello";
    EXPECT_EQ(vd_vol_pwrite(v, buf, sizeof(buf), (20ull << 20) - 4096, 0), 0);
    char back[4096];
    EXPECT_EQ(vd_vol_pread(v, back, sizeof(back), (20ull << 20) - 4096), 0);
    EXPECT_STREQ(back, "hello");
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, CompareAndWrite_MatchWrites_MiscompareReportsOffset)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> zero(512, 0), one(512, 1), back(512);
    uint64_t mis = 99;
    EXPECT_EQ(vd_vol_compare_and_write(v, zero.data(), one.data(), 512, 4096, &mis), 0);
    EXPECT_EQ(vd_vol_pread(v, back.data(), 512, 4096), 0);
    EXPECT_EQ(back, one);
    one[10] = 2;
    EXPECT_EQ(vd_vol_compare_and_write(v, one.data(), zero.data(), 512, 4096, &mis), 1);
    EXPECT_EQ(mis, 10u);
    EXPECT_EQ(vd_vol_pread(v, back.data(), 512, 4096), 0);
    EXPECT_EQ(back[0], 1);
    int mapped;
    uint64_t len;
    EXPECT_EQ(vd_vol_lba_status(v, 4096, &len, &mapped), 0);
    EXPECT_EQ(mapped, 1);
    EXPECT_EQ(len, (8ull << 20) - 4096);
    EXPECT_EQ(vd_vol_lba_status(v, 8ull << 20, &len, &mapped), -ERANGE);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Issue 18 item 1 / issue 8 defect 17: a size near 2^64 wrapped in
// vd_div_up and created a 0-byte volume (a 0-byte mirror took 2 extents).
TEST_F(PoolTest, VolCreate_SizeNear2e64_TooLargeNothingCreated)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    struct vd_pool_info a, b;
    vd_pool_get_info(p, &a);
    uint64_t max = vd_vol_size_max(p);
    EXPECT_EQ(max % (4ull << 20), 0u);
    EXPECT_GT(max, UINT64_MAX - (16ull << 20));
    log_lines.clear();
    EXPECT_EQ(vd_vol_create(p, "v", 18446744073709551104ull, nullptr), -EFBIG);
    ASSERT_FALSE(log_lines.empty());
    EXPECT_NE(log_lines.back().find("size 18446744073709551104 is too large (at most "),
              std::string::npos) << log_lines.back();
    EXPECT_EQ(vd_vol_create(p, "v", UINT64_MAX, nullptr), -EFBIG);
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    o.allow_same_node = 1;
    EXPECT_EQ(vd_vol_create(p, "m", 18446744073709551104ull, &o), -EFBIG);
    EXPECT_EQ(vd_vol_create(p, "m", max + 512, &o), -EFBIG);
    EXPECT_EQ(vd_vol_create(p, "v", max, nullptr), -ENOSPC);
    ASSERT_EQ(vd_vol_create(p, "small", 4096, nullptr), 0);
    EXPECT_EQ(vd_vol_extend(p, "small", 18446744073709551104ull), -EFBIG);
    vd_pool_get_info(p, &b);
    EXPECT_EQ(b.nvols, 1u);
    EXPECT_EQ(b.used_bytes, 4ull << 20);
    EXPECT_EQ(b.seq, a.seq + 1);
    vd_pool_close(p);
}

// Defect 7: one device whose flush fails (or that is gone) failed
// SYNCHRONIZE CACHE on every LUN of the pool.  A linear volume's flush
// covers only the devices its extents map.
TEST_F(PoolTest, VolFlush_UnmappedFailingDevice_DoesNotFailIt)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "a", 4ull << 20, nullptr), 0); // one extent, d0
    struct vd_run *runs;
    size_t n;
    ASSERT_EQ(vd_vol_get_runs(p, "a", &runs, &n), 0);
    ASSERT_EQ(n, 1u);
    ASSERT_EQ(runs[0].dev, 0u);
    free(runs);
    vd_vol *a = vd_vol_open(p, "a");
    ASSERT_EQ(vd_vol_create(p, "b", 40ull << 20, nullptr), 0); // all devices
    vd_vol *b = vd_vol_open(p, "b");
    Gate *g1 = Wrap(p, 1);
    char buf[4096] = "x";
    // another LUN's write on d1, whose flushes fail from now on
    ASSERT_EQ(vd_dev_pwrite(&p->devs[1], buf, sizeof(buf), p->devs[1].data_offset, 0), 0);
    g1->flush_err = -EIO;
    ASSERT_EQ(vd_vol_pwrite(a, buf, sizeof(buf), 0, 0), 0);
    EXPECT_EQ(vd_vol_flush(a), 0);
    // d2 unavailable: still not a's business
    p->devs[2].state = VD_DEV_FAILED;
    EXPECT_EQ(vd_vol_flush(a), 0);
    p->devs[2].state = VD_DEV_OK;
    // a volume that maps d1 does fail
    EXPECT_EQ(vd_vol_flush(b), -EIO);
    g1->flush_err = 0;
    EXPECT_EQ(vd_vol_flush(b), 0);
    p->devs[1].state = VD_DEV_FAILED;
    EXPECT_EQ(vd_vol_flush(b), -EIO);
    EXPECT_EQ(vd_vol_flush(a), 0);
    p->devs[1].state = VD_DEV_OK;
    vd_vol_close(a);
    vd_vol_close(b);
    vd_pool_close(p);
}

struct Writer {
    vd_vol *v;
    uint64_t off;
    bool *stop;
    long n = 0;
    pthread_t t;
    static void *Run(void *a)
    {
        auto *w = (Writer *)a;
        char buf[4096];
        memset(buf, 'w', sizeof(buf));
        while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
            if (vd_vol_pwrite(w->v, buf, sizeof(buf), w->off, 0) == 0)
                w->n++;
        }
        return nullptr;
    }
};

int64_t NowMs()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Defect 15: with reader-preferring rwlocks, a compare-and-write (which
// takes write_lock exclusively) starved while writes kept write_lock
// shared without a gap.  The wrapper makes every write wait (at most
// 20 ms) for the next one to start, so shared holds always overlap.
TEST_F(PoolTest, CompareAndWrite_UnderContinuousWrites_CompletesInBound)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "v", 4ull << 20, nullptr), 0); // on d0
    vd_vol *v = vd_vol_open(p, "v");
    Gate *g = Wrap(p, 0);
    g->relay_ms = 20;
    bool stop = false;
    Writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i].v = v;
        w[i].off = 8192 * (i + 1);
        w[i].stop = &stop;
        pthread_create(&w[i].t, nullptr, Writer::Run, &w[i]);
    }
    ASSERT_TRUE(WaitFor([&] { return Locked(g, &Gate::writes) >= 8; }));
    std::vector<char> zero(512, 0), one(512, 1);
    uint64_t mis = 0;
    int64_t t0 = NowMs();
    // the writers stop by themselves after 6 s at the latest
    struct Stopper {
        bool *stop;
        pthread_t t;
        static void *Run(void *a)
        {
            auto *s = (Stopper *)a;
            for (int i = 0; i < 600 && !__atomic_load_n(s->stop, __ATOMIC_ACQUIRE); i++)
                usleep(10000);
            __atomic_store_n(s->stop, true, __ATOMIC_RELEASE);
            return nullptr;
        }
    } st{ &stop, {} };
    pthread_create(&st.t, nullptr, Stopper::Run, &st);
    int rc = vd_vol_compare_and_write(v, zero.data(), one.data(), 512, 0, &mis);
    int64_t took = NowMs() - t0;
    bool writers_still_running = !__atomic_load_n(&stop, __ATOMIC_ACQUIRE);
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
    for (int i = 0; i < 4; i++)
        pthread_join(w[i].t, nullptr);
    pthread_join(st.t, nullptr);
    EXPECT_EQ(rc, 0);
    EXPECT_TRUE(writers_still_running) << "CAW only completed once the writes stopped";
    EXPECT_LT(took, 3000);
    vd_vol_close(v);
    vd_pool_close(p);
}

bool AllZero(const std::vector<char> &b)
{
    for (char c : b)
        if (c)
            return false;
    return true;
}

// Defect 16: a new volume read a removed volume's data.  Its extents are
// zeroed (the file's zero op: a hole) and flushed before the commit.
TEST_F(PoolTest, VolCreate_AfterRemove_ReadsZeroes)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "old", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "old");
    std::vector<char> secret(1 << 20, 's');
    for (uint64_t off = 0; off < (8ull << 20); off += secret.size())
        ASSERT_EQ(vd_vol_pwrite(v, secret.data(), secret.size(), off, 0), 0);
    vd_vol_close(v);
    ASSERT_EQ(vd_vol_remove(p, "old"), 0);
    Gate *g = Wrap(p, 0);
    ASSERT_EQ(vd_vol_create(p, "new", 8ull << 20, nullptr), 0);
    // zeroed, then flushed, then the metadata record (FUA)
    std::string ev = g->events;
    ASSERT_NE(ev.find('z'), std::string::npos) << ev;
    EXPECT_LT(ev.find('z'), ev.find('f')) << ev;
    EXPECT_LT(ev.find('f'), ev.find('W')) << ev;
    v = vd_vol_open(p, "new");
    std::vector<char> back(1 << 20);
    for (uint64_t off = 0; off < (8ull << 20); off += back.size()) {
        ASSERT_EQ(vd_vol_pread(v, back.data(), back.size(), off), 0);
        EXPECT_TRUE(AllZero(back)) << "old data at " << off;
    }
    // extend zeroes its new extents too
    vd_vol_close(v);
    ASSERT_EQ(vd_vol_create(p, "old2", 40ull << 20, nullptr), 0);
    v = vd_vol_open(p, "old2");
    for (uint64_t off = 0; off < (40ull << 20); off += secret.size())
        ASSERT_EQ(vd_vol_pwrite(v, secret.data(), secret.size(), off, 0), 0);
    vd_vol_close(v);
    ASSERT_EQ(vd_vol_remove(p, "old2"), 0);
    ASSERT_EQ(vd_vol_extend(p, "new", 48ull << 20), 0);
    v = vd_vol_open(p, "new");
    for (uint64_t off = 8ull << 20; off < (48ull << 20); off += back.size()) {
        ASSERT_EQ(vd_vol_pread(v, back.data(), back.size(), off), 0);
        EXPECT_TRUE(AllZero(back)) << "old data at " << off;
    }
    vd_vol_close(v);
    vd_pool_close(p);
}

// Defect 16: without a zero op the pool writes zero buffers; a new
// mirror's legs (and bitmap extents) are equal where never written.
TEST_F(PoolTest, MirrorCreate_NoZeroOp_LegsZeroedByBuffers)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    std::vector<char> junk(1 << 20);
    for (size_t i = 0; i < junk.size(); i++)
        junk[i] = (char)(i * 31 + 7);
    ASSERT_EQ(vd_vol_create(p, "fill", 3 * 14 * (4ull << 20), nullptr), 0);
    vd_vol *v = vd_vol_open(p, "fill");
    for (uint64_t off = 0; off < 3 * 14 * (4ull << 20); off += junk.size())
        ASSERT_EQ(vd_vol_pwrite(v, junk.data(), junk.size(), off, 0), 0);
    vd_vol_close(v);
    ASSERT_EQ(vd_vol_remove(p, "fill"), 0);
    std::vector<Gate *> gs;
    for (uint32_t i = 0; i < 3; i++) {
        gs.push_back(Wrap(p, i));
        gs.back()->no_zero = true;
    }
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    o.allow_same_node = 1;
    ASSERT_EQ(vd_vol_create(p, "m", 16ull << 20, &o), 0);
    struct vd_vol *mv = vd_vol_find(p, "m");
    ASSERT_NE(mv, nullptr);
    std::vector<char> a(1 << 20), b(1 << 20);
    for (uint64_t off = 0; off < (16ull << 20); off += a.size()) {
        uint64_t da, db;
        pthread_rwlock_rdlock(&mv->map_lock);
        struct vd_dev *d0 = vd_leg_locate(mv, 0, off, &da);
        struct vd_dev *d1 = vd_leg_locate(mv, 1, off, &db);
        pthread_rwlock_unlock(&mv->map_lock);
        ASSERT_TRUE(d0 && d1);
        ASSERT_EQ(vd_dev_pread(d0, a.data(), a.size(), da), 0);
        ASSERT_EQ(vd_dev_pread(d1, b.data(), b.size(), db), 0);
        EXPECT_TRUE(AllZero(a)) << "leg 0 at " << off;
        EXPECT_TRUE(AllZero(b)) << "leg 1 at " << off;
    }
    vd_pool_close(p);
}

} // namespace
