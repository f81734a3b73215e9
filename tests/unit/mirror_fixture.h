// Shared fixtures of the mirror unit tests (tests/unit/replica/*_test.cc,
// one file per replica/ source file): a fault-injecting device wrapper
// with gates, the wait-point hook, and the MirrorTest and MirrorSafety
// fixtures (a pool of three 64 MiB files on three nodes).  Everything has
// external linkage (inline) in namespace vdtest_mirror, so that every test
// file's TEST_F(MirrorTest, ...) uses the one fixture class, as gtest
// requires of a test suite spread over several files.
#ifndef VDLVM_TESTS_UNIT_MIRROR_FIXTURE_H
#define VDLVM_TESTS_UNIT_MIRROR_FIXTURE_H

#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pool/pool_int.h"
#include "replica/vdreplica.h"

extern "C" {
__attribute__((weak)) void (*g_mirror_test_hook)(struct vd_vol *, const char *) = nullptr;
}

namespace vdtest_mirror {

// A one-shot gate: the first I/O of its kind overlapping [lo, hi) of the
// device blocks (before the I/O, or after it with post) until Release();
// later ones pass.  Waits are bounded so a broken build cannot hang.
enum GateKind { G_READ, G_WRITE, G_FLUSH };
struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool armed = false, hit = false, released = false, post = false;
    GateKind kind = G_WRITE;
    uint64_t lo = 0, hi = 0;

    void Arm(GateKind k, uint64_t l, uint64_t h, bool after = false)
    {
        std::lock_guard<std::mutex> g(mu);
        kind = k, lo = l, hi = h, post = after;
        armed = true, hit = false, released = false;
    }
    // Called by the device; true when it blocked.
    bool Pass(GateKind k, uint64_t off, uint64_t len, bool after)
    {
        std::unique_lock<std::mutex> g(mu);
        if (!armed || hit || k != kind || after != post ||
            (k != G_FLUSH && (off + len <= lo || off >= hi)))
            return false;
        hit = true;
        cv.notify_all();
        cv.wait_for(g, std::chrono::seconds(15), [&] { return released; });
        return true;
    }
    bool WaitHit(int ms = 20000)
    {
        std::unique_lock<std::mutex> g(mu);
        return cv.wait_for(g, std::chrono::milliseconds(ms), [&] { return hit; });
    }
    void Release()
    {
        std::lock_guard<std::mutex> g(mu);
        released = true;
        armed = false;
        cv.notify_all();
    }
};

// A device wrapper whose I/O fails while `broken` is set, with a gate,
// failing flushes, failing writes in a range, and NOWAIT support.
struct FaultBdev {
    struct vd_bdev b;
    struct vd_bdev *inner;
    int broken;
    int spare_md;   // with broken: the metadata area still works (a leg's
                    // data fails while the pool can record it: the write
                    // quorum of the metadata copies is met)
    int bad_reads;  // reads fail, writes work (a bad sector rewritten)
    int fail_flush; // flushes fail
    int nowait_ok;  // NOWAIT I/O is served (a page-cache hit), else -EAGAIN
    uint64_t fail_lo, fail_hi; // writes overlapping [lo, hi) fail
    uint64_t nw_lo, nw_hi;     // NOWAIT writes overlapping [lo, hi): -EAGAIN
    int reads;      // reads seen
    int writes;     // writes seen
    int flushes;    // flushes seen
    Gate gate;      // reads and writes
    Gate fgate;     // flushes
};
inline int f_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *f = (FaultBdev *)b;
    __atomic_add_fetch(&f->reads, 1, __ATOMIC_RELAXED);
    f->gate.Pass(G_READ, off, len, false);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&f->bad_reads, __ATOMIC_ACQUIRE))
        return -EIO;
    int r = f->inner->ops->pread(f->inner, buf, len, off);
    f->gate.Pass(G_READ, off, len, true);
    return r;
}
inline int f_pwrite(struct vd_bdev *b, const void *buf, size_t len, uint64_t off, unsigned fl)
{
    auto *f = (FaultBdev *)b;
    if (fl & VD_IO_NOWAIT) {
        if (!__atomic_load_n(&f->nowait_ok, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&f->broken, __ATOMIC_ACQUIRE))
            return -EAGAIN;
        if (off < __atomic_load_n(&f->nw_hi, __ATOMIC_ACQUIRE) &&
            off + len > __atomic_load_n(&f->nw_lo, __ATOMIC_ACQUIRE))
            return -EAGAIN;
        fl &= ~VD_IO_NOWAIT;
    }
    __atomic_add_fetch(&f->writes, 1, __ATOMIC_RELAXED);
    f->gate.Pass(G_WRITE, off, len, false);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE) &&
        !(__atomic_load_n(&f->spare_md, __ATOMIC_ACQUIRE) &&
          off >= VD_MD_OFFSET && off + len <= VD_MD_OFFSET + VD_MD_SIZE))
        return -EIO;
    uint64_t lo = __atomic_load_n(&f->fail_lo, __ATOMIC_ACQUIRE);
    uint64_t hi = __atomic_load_n(&f->fail_hi, __ATOMIC_ACQUIRE);
    if (off < hi && off + len > lo)
        return -EIO;
    int r = f->inner->ops->pwrite(f->inner, buf, len, off, fl);
    f->gate.Pass(G_WRITE, off, len, true);
    return r;
}
inline int f_flush(struct vd_bdev *b)
{
    auto *f = (FaultBdev *)b;
    __atomic_add_fetch(&f->flushes, 1, __ATOMIC_RELAXED);
    f->fgate.Pass(G_FLUSH, 0, 0, false);
    if (__atomic_load_n(&f->broken, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&f->fail_flush, __ATOMIC_ACQUIRE))
        return -EIO;
    return f->inner->ops->flush(f->inner);
}
inline int f_pread_nowait(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *f = (FaultBdev *)b;
    if (!__atomic_load_n(&f->nowait_ok, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&f->broken, __ATOMIC_ACQUIRE))
        return -EAGAIN;
    return f->inner->ops->pread(f->inner, buf, len, off);
}
inline void f_close(struct vd_bdev *b)
{
    auto *f = (FaultBdev *)b;
    f->inner->ops->close(f->inner);
    delete f;
}
inline const struct vd_bdev_ops fault_ops = { "fault", f_pread, f_pwrite, f_flush, f_close,
                                       f_pread_nowait, nullptr, nullptr, nullptr };

inline FaultBdev *Wrap(vd_pool *p, uint32_t dev)
{
    auto *f = new FaultBdev{};
    f->inner = p->devs[dev].bdev;
    f->b.ops = &fault_ops;
    f->b.size = f->inner->size;
    f->b.block_size = f->inner->block_size;
    p->devs[dev].bdev = &f->b;
    return f;
}

// The mirror's wait points (see replica/mirror_int.h).  Weak: the tests
// also build against a mirror.c without the hook, where they must fail.
inline std::atomic<int> g_range_waits{0}, g_replace_waits{0};
inline void RecordHook(struct vd_vol *, const char *ev)
{
    if (!strcmp(ev, "range-wait"))
        g_range_waits++;
    else if (!strcmp(ev, "replace-wait"))
        g_replace_waits++;
}

// Poll pred every 5 ms for at most ms.
inline bool WaitFor(const std::function<bool()> &pred, int ms = 20000)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return false;
        usleep(5000);
    }
    return true;
}

class MirrorTest : public ::testing::Test {
  protected:
    std::string dir;
    struct vd_conf_pool conf {};
    std::vector<struct vd_conf_dev> devs;
    std::vector<std::string> paths, names, nodes;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-mirror-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", dir.c_str(), 1);
        vd_log_set_fn([](int, const char *) {});
        g_range_waits = 0;
        g_replace_waits = 0;
        g_mirror_test_hook = RecordHook;
        int n = 3;
        devs.assign(n, {});
        for (int i = 0; i < n; i++) {
            paths.push_back(dir + "/d" + std::to_string(i) + ".img");
            names.push_back("d" + std::to_string(i));
            nodes.push_back("node" + std::to_string(i));
        }
        for (int i = 0; i < n; i++) {
            devs[i].name = (char *)names[i].c_str();
            devs[i].path = (char *)paths[i].c_str();
            devs[i].size = 64ull << 20;
            devs[i].node = (char *)nodes[i].c_str();
        }
        conf.file = (char *)"test.yaml";
        conf.name = (char *)"pool0";
        conf.extent_size = 4ull << 20;
        conf.ndevs = n;
        conf.devs = devs.data();
        ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
        vd_log_set_fn(nullptr);
        g_mirror_test_hook = nullptr;
    }
    vd_pool *Open()
    {
        vd_pool *p = nullptr;
        EXPECT_EQ(vd_pool_open(&conf, &p), 0);
        return p;
    }
    void CreateMirror(vd_pool *p, uint64_t size = 16ull << 20)
    {
        struct vd_vol_opts o;
        vd_vol_opts_init(&o);
        o.layout = VD_LAYOUT_MIRROR;
        o.copies = 2;
        o.region_size = 1ull << 20;
        ASSERT_EQ(vd_vol_create(p, "m", size, &o), 0);
    }
    static std::vector<char> Pattern(size_t n, int seed)
    {
        std::vector<char> v(n);
        for (size_t i = 0; i < n; i++)
            v[i] = (char)(i * 31 + seed * 7 + (i >> 9));
        return v;
    }
    static uint32_t LegDev(vd_pool *p, int leg)
    {
        vd_vol *v = vd_vol_find(p, "m");
        return v->map[1 * v->copies + leg].dev;
    }
    // Device and device offset of volume byte off on leg.
    static uint64_t LegOff(vd_pool *p, int leg, uint64_t off, uint32_t *dev = nullptr)
    {
        vd_vol *v = vd_vol_find(p, "m");
        uint64_t doff = 0;
        pthread_rwlock_rdlock(&v->map_lock);
        struct vd_dev *d = vd_leg_locate(v, leg, off, &doff);
        pthread_rwlock_unlock(&v->map_lock);
        if (dev)
            *dev = d->idx;
        return doff;
    }
    static uint64_t BitmapOff(vd_pool *p, int leg)
    {
        vd_vol *v = vd_vol_find(p, "m");
        uint64_t doff = 0;
        pthread_rwlock_rdlock(&v->map_lock);
        vd_leg_bitmap_locate(v, leg, &doff);
        pthread_rwlock_unlock(&v->map_lock);
        return doff;
    }
    static struct vd_bdev *Raw(vd_pool *p, uint32_t dev)
    {
        struct vd_bdev *b = p->devs[dev].bdev;
        return b->ops == &fault_ops ? ((FaultBdev *)b)->inner : b;
    }
    // Volume bytes [off, off+len) as leg holds them, behind the mirror.
    static std::vector<char> ReadLeg(vd_pool *p, int leg, uint64_t off, size_t len)
    {
        uint32_t dev;
        uint64_t doff = LegOff(p, leg, off, &dev);
        std::vector<char> r(len);
        struct vd_bdev *b = Raw(p, dev);
        EXPECT_EQ(b->ops->pread(b, r.data(), len, doff), 0);
        return r;
    }
    static struct vd_mirror_info Info(vd_pool *p)
    {
        struct vd_mirror_info mi;
        EXPECT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
        return mi;
    }
    static bool WaitClean(vd_pool *p)
    {
        return WaitFor([&] { return Info(p).dirty_regions == 0; });
    }
    static bool WaitInSync(vd_pool *p)
    {
        return WaitFor([&] {
            auto mi = Info(p);
            for (uint32_t l = 0; l < mi.copies; l++)
                if (mi.legs[l].state != VD_LEG_INSYNC)
                    return false;
            return mi.resync_state == VD_RESYNC_IDLE;
        }, 30000);
    }
    static void Verify(vd_pool *p, size_t want_diff)
    {
        struct vd_verify_result res;
        ASSERT_EQ(vd_mirror_verify(p, "m", 0, &res), 0);
        EXPECT_EQ(res.ndiff, want_diff);
        vd_verify_result_free(&res);
    }
};

// ---- issue 8: data safety of mirrors ------------------------------------
// Each test forces one interleaving with gates and bounded waits, and
// names the defect of issue 8 it covers.
class MirrorSafety : public MirrorTest {
  protected:
    vd_pool *p = nullptr;
    vd_vol *v = nullptr;
    FaultBdev *f0 = nullptr, *f1 = nullptr;
    std::vector<char> base;

    // A 16 MiB 2-leg mirror holding base, both legs wrapped.
    void Start(bool clean = true)
    {
        p = Open();
        CreateMirror(p);
        v = vd_vol_open(p, "m");
        base = Pattern(16 << 20, 20);
        ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
        if (clean) {
            ASSERT_TRUE(WaitClean(p));
        }
        f0 = Wrap(p, LegDev(p, 0));
        f1 = Wrap(p, LegDev(p, 1));
    }
    void Stop()
    {
        if (v)
            vd_vol_close(v);
        if (p)
            vd_pool_close(p);
        v = nullptr;
        p = nullptr;
    }
    // Leg 1 fails while regions [first, last] get seed's data.
    void FailLeg1While(int first, int last, int seed)
    {
        __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
        auto w = Pattern(1 << 20, seed);
        for (int r = first; r <= last; r++) {
            ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), (uint64_t)r << 20, 0), 0);
            memcpy(base.data() + ((size_t)r << 20), w.data(), w.size());
        }
        ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    }
    // The next clean-region read of v goes to leg 0 first (reads of clean
    // regions alternate between in-sync legs).  Before any read error.
    void NextReadOnLeg0()
    {
        std::vector<char> r(4096);
        for (int i = 0; i < 4; i++) {
            int before = __atomic_load_n(&f0->reads, __ATOMIC_RELAXED);
            ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 8ull << 20), 0);
            if (__atomic_load_n(&f0->reads, __ATOMIC_RELAXED) == before)
                return;
        }
        FAIL() << "reads never alternated";
    }
};

} // namespace vdtest_mirror

#endif
