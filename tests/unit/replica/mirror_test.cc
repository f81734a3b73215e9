// Unit tests for replica/mirror.c: fan-out writes, leg failure, NOWAIT I/O, flush, range ordering.
// Shared fixtures: tests/unit/mirror_fixture.h.
#include "tests/unit/mirror_fixture.h"

using namespace vdtest_mirror;

TEST_F(MirrorTest, Write_LandsOnBothLegs_ReadBack)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto w = Pattern(3 << 20, 1);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 512 * 1024, 0), 0);
    std::vector<char> r(w.size());
    for (int i = 0; i < 4; i++) { // reads are spread over legs
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 512 * 1024), 0);
        EXPECT_EQ(r, w);
    }
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, LegFailure_IsDurable)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    FaultBdev *f = Wrap(p, LegDev(p, 0));
    __atomic_store_n(&f->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(4096, 4);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, VD_IO_FUA), 0);
    vd_vol_close(v);
    vd_pool_close(p);
    // Reopen without the fault: leg 0 is known failed, and its data must
    // not be trusted until resynced; leg 1 has the write.
    p = Open();
    v = vd_vol_open(p, "m");
    std::vector<char> r(4096);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(r, w);
    vd_vol_close(v);
    ASSERT_EQ(vd_mirror_resync_wait(p, "m", 20000), 0);
    Verify(p, 0);
    vd_pool_close(p);
}

TEST_F(MirrorTest, CompareAndWrite_AcrossLegs)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    std::vector<char> zero(512, 0), one(512, 1);
    uint64_t mis;
    EXPECT_EQ(vd_vol_compare_and_write(v, zero.data(), one.data(), 512, 0, &mis), 0);
    EXPECT_EQ(vd_vol_compare_and_write(v, zero.data(), one.data(), 512, 0, &mis), 1);
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

// A write failing on every leg must not leave the volume without an
// in-sync leg: the first stays in use (the error goes to the caller), the
// others are failed and resynced from it when they answer again.
TEST_F(MirrorTest, WriteFailsOnEveryLeg_LastInSyncLegKept)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto base = Pattern(4 << 20, 4);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
    FaultBdev *f0 = Wrap(p, LegDev(p, 0));
    FaultBdev *f1 = Wrap(p, LegDev(p, 1));
    // The pool must be able to record the leg failure: its metadata
    // copies on these devices keep working (write quorum 2 of 3).
    f0->spare_md = f1->spare_md = 1;
    __atomic_store_n(&f0->broken, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(8192, 5);
    EXPECT_NE(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_FAILED);
    // still failing: errors, and the in-sync leg stays
    EXPECT_NE(vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, 0), 0);
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);

    __atomic_store_n(&f0->broken, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 3ull << 20, 0), 0);
    bool synced = false;
    for (int i = 0; i < 200 && !synced; i++) {
        usleep(50000);
        vd_mirror_get_info(p, "m", &mi);
        synced = mi.legs[1].state == VD_LEG_INSYNC && mi.resync_state == VD_RESYNC_IDLE;
    }
    ASSERT_TRUE(synced);
    std::vector<char> r(8192);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 3ull << 20), 0);
    EXPECT_EQ(r, w);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(0, memcmp(r.data(), base.data(), r.size()));
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(MirrorTest, NoWait_OnlyIntoDirtyRegions_BothLegs)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    struct vd_mirror_info mi;
    vd_mirror_get_info(p, "m", &mi);
    uint64_t dirty0 = mi.dirty_regions;
    auto w = Pattern(4096, 9);
    // a clean region needs a durable bitmap write first: never inline
    EXPECT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, VD_IO_NOWAIT), -EAGAIN);
    vd_mirror_get_info(p, "m", &mi);
    EXPECT_EQ(mi.dirty_regions, dirty0);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, 0), 0);
    std::vector<char> r(4096);
    ASSERT_EQ(vd_vol_pread_flags(v, r.data(), r.size(), 2ull << 20, VD_IO_NOWAIT), 0);
    EXPECT_EQ(r, w);
    auto w2 = Pattern(4096, 10);
    int rc = vd_vol_pwrite(v, w2.data(), w2.size(), 2ull << 20, VD_IO_NOWAIT);
    ASSERT_TRUE(rc == 0 || rc == -EAGAIN) << rc;
    if (rc == -EAGAIN) {
        ASSERT_EQ(vd_vol_pwrite(v, w2.data(), w2.size(), 2ull << 20, 0), 0);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 2ull << 20), 0);
        EXPECT_EQ(r, w2);
    }
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Devices that only take whole 512-byte blocks (as the iSCSI driver):
// short requests go through a bounce buffer and behave as on a file.
namespace {
struct StrictBdev {
    struct vd_bdev b;
    struct vd_bdev *inner;
};
int s_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    auto *s = (StrictBdev *)b;
    if (off % 512 || len % 512)
        return -EINVAL;
    return s->inner->ops->pread(s->inner, buf, len, off);
}
int s_pwrite(struct vd_bdev *b, const void *buf, size_t len, uint64_t off, unsigned fl)
{
    auto *s = (StrictBdev *)b;
    if (off % 512 || len % 512)
        return -EINVAL;
    return s->inner->ops->pwrite(s->inner, buf, len, off, fl);
}
int s_flush(struct vd_bdev *b) { return ((StrictBdev *)b)->inner->ops->flush(((StrictBdev *)b)->inner); }
void s_close(struct vd_bdev *b)
{
    auto *s = (StrictBdev *)b;
    s->inner->ops->close(s->inner);
    delete s;
}
const struct vd_bdev_ops strict_ops = { "strict", s_pread, s_pwrite, s_flush, s_close,
                                        nullptr, nullptr, nullptr, nullptr };
} // namespace

TEST_F(MirrorTest, ShortRequests_OnBlockDevices_Bounced)
{
    vd_pool *p = Open();
    CreateMirror(p);
    for (int leg = 0; leg < 2; leg++) {
        uint32_t d = LegDev(p, leg);
        auto *s = new StrictBdev{};
        s->inner = p->devs[d].bdev;
        s->b.ops = &strict_ops;
        s->b.size = s->inner->size;
        s->b.block_size = 512;
        p->devs[d].bdev = &s->b;
    }
    vd_vol *v = vd_vol_open(p, "m");
    auto base = Pattern(8192, 6);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 4096, 0), 0);
    auto w = Pattern(1500, 7);
    // 200 bytes at a block start, 1500 bytes from the middle of a block
    // across three blocks into a fourth
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), 200, 4096, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), 1500, 4096 + 1024 + 100, 0), 0);
    auto want = base;
    memcpy(want.data(), w.data(), 200);
    memcpy(want.data() + 1024 + 100, w.data(), 1500);
    std::vector<char> r(8192);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 4096), 0);
    EXPECT_EQ(r, want);
    std::vector<char> r2(300);
    ASSERT_EQ(vd_vol_pread(v, r2.data(), r2.size(), 4096 + 1000), 0);
    EXPECT_EQ(0, memcmp(r2.data(), want.data() + 1000, 300));
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_INSYNC);
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Defect 7: SYNCHRONIZE CACHE of a mirror: a leg whose flush fails is
// failed and the flush succeeds; devices outside the mirror do not count;
// the last in-sync leg failing to flush fails it.
TEST_F(MirrorSafety, Flush_LegFlushFails_LegFailedFlushSucceeds)
{
    Start();
    auto w = Pattern(4096, 27);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    __atomic_store_n(&f1->fail_flush, 1, __ATOMIC_RELEASE);
    EXPECT_EQ(vd_vol_flush(v), 0);
    EXPECT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    EXPECT_EQ(Info(p).legs[0].state, VD_LEG_INSYNC);
    // degraded: still fine, and a failed leg is not even asked
    int n1 = __atomic_load_n(&f1->flushes, __ATOMIC_RELAXED);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    EXPECT_EQ(vd_vol_flush(v), 0);
    EXPECT_EQ(__atomic_load_n(&f1->flushes, __ATOMIC_RELAXED), n1);
    // the last in-sync leg cannot flush: the error goes to the initiator
    __atomic_store_n(&f0->fail_flush, 1, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    EXPECT_EQ(vd_vol_flush(v), -EIO);
    EXPECT_EQ(Info(p).legs[0].state, VD_LEG_INSYNC);
    __atomic_store_n(&f0->fail_flush, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->fail_flush, 0, __ATOMIC_RELEASE);
    Stop();
}

TEST_F(MirrorSafety, Flush_DeviceOutsideTheMirrorFails_MirrorFlushSucceeds)
{
    Start();
    uint32_t spare = 3 - LegDev(p, 0) - LegDev(p, 1);
    FaultBdev *fs = Wrap(p, spare);
    // the spare has unflushed writes (its last extent is free)
    struct vd_dev *d = &p->devs[spare];
    std::vector<char> z(4096, 1);
    ASSERT_EQ(vd_dev_pwrite(d, z.data(), z.size(),
                            d->data_offset + (d->pe_count - 1) * p->extent_size, 0), 0);
    __atomic_store_n(&fs->fail_flush, 1, __ATOMIC_RELEASE);
    auto w = Pattern(4096, 28);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1ull << 20, 0), 0);
    EXPECT_EQ(vd_vol_flush(v), 0);
    EXPECT_EQ(__atomic_load_n(&fs->flushes, __ATOMIC_RELAXED), 0);
    EXPECT_EQ(Info(p).legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(Info(p).legs[1].state, VD_LEG_INSYNC);
    __atomic_store_n(&fs->fail_flush, 0, __ATOMIC_RELEASE);
    Stop();
}

// Defect 8: tgtd's main thread (VD_IO_NOWAIT) never waits behind a
// bitmap write in progress on a slow device.
TEST_F(MirrorSafety, NoWait_DoesNotWaitBehindABitmapWrite)
{
    Start();
    __atomic_store_n(&f0->nowait_ok, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->nowait_ok, 1, __ATOMIC_RELEASE);
    auto w = Pattern(4096, 29);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 5ull << 20, 0), 0); // bit 5 durable
    uint64_t bm = BitmapOff(p, 1);
    f1->gate.Arm(G_WRITE, bm, bm + 4096);
    auto slow = std::async(std::launch::async, [&] { // region 2 is clean
        return vd_vol_pwrite(v, w.data(), w.size(), 2ull << 20, 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit()) << "no bitmap write";
    auto inl = std::async(std::launch::async, [&] {
        std::vector<char> r(4096);
        int a = vd_vol_pread_flags(v, r.data(), r.size(), 5ull << 20, VD_IO_NOWAIT);
        int b = vd_vol_pwrite(v, w.data(), w.size(), 5ull << 20, VD_IO_NOWAIT);
        int c = vd_vol_pread_flags(v, r.data(), r.size(), 2ull << 20, VD_IO_NOWAIT);
        return (a == 0 || a == -EAGAIN) && (b == 0 || b == -EAGAIN) &&
               (c == 0 || c == -EAGAIN);
    });
    bool prompt = inl.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    EXPECT_TRUE(prompt) << "a NOWAIT call waited behind device I/O";
    f1->gate.Release();
    EXPECT_TRUE(inl.get());
    EXPECT_EQ(slow.get(), 0);
    Verify(p, 0);
    Stop();
}

// Defect 12: overlapping writes in flight land in the same order on
// every leg.
TEST_F(MirrorSafety, OverlappingWrites_SameOrderOnEveryLeg)
{
    Start();
    auto a = Pattern(64 << 10, 31), b = Pattern(64 << 10, 32);
    uint64_t off = 4ull << 20;
    f1->gate.Arm(G_WRITE, LegOff(p, 1, off), LegOff(p, 1, off) + a.size());
    auto wa = std::async(std::launch::async, [&] {
        return vd_vol_pwrite(v, a.data(), a.size(), off, 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit());
    auto wb = std::async(std::launch::async, [&] {
        return vd_vol_pwrite(v, b.data(), b.size(), off, 0);
    });
    ASSERT_TRUE(WaitFor([&] {
        return g_range_waits > 0 ||
               wb.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    }, 10000));
    f1->gate.Release();
    EXPECT_EQ(wa.get(), 0);
    EXPECT_EQ(wb.get(), 0);
    EXPECT_EQ(ReadLeg(p, 0, off, b.size()), ReadLeg(p, 1, off, b.size()));
    Verify(p, 0);
    Stop();
}

// Defect 13: a NOWAIT write that reached one leg keeps its region's bit
// set (reads stay on the source leg) until its redo on a worker finished.
TEST_F(MirrorSafety, NoWaitPartial_BitKeptUntilTheRedo)
{
    Start();
    __atomic_store_n(&f0->nowait_ok, 1, __ATOMIC_RELEASE); // leg 1: cache misses
    auto a = Pattern(64 << 10, 33), b = Pattern(64 << 10, 34), c = Pattern(4096, 35);
    uint64_t off = 2ull << 20;
    ASSERT_EQ(vd_vol_pwrite(v, a.data(), a.size(), off, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, VD_IO_NOWAIT), -EAGAIN);
    ASSERT_EQ(ReadLeg(p, 0, off, b.size()), b);
    ASSERT_EQ(ReadLeg(p, 1, off, a.size()), a);
    // A later write elsewhere gets cleaned: the cleaner ran passes after
    // the NOWAIT write.
    ASSERT_EQ(vd_vol_pwrite(v, c.data(), c.size(), 7ull << 20, 0), 0);
    ASSERT_TRUE(WaitFor([&] { return Info(p).dirty_regions <= 1; }));
    std::vector<char> r(b.size());
    for (int i = 0; i < 2; i++) { // one read per leg if the bit were clear
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), off), 0);
        EXPECT_EQ(r, b) << "the bit went while the legs differ";
    }
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, 0), 0); // the redo
    ASSERT_TRUE(WaitClean(p));
    Verify(p, 0);
    Stop();
}

// M3 (vdsim seed 7536): a NOWAIT write split at an extent boundary whose
// first piece reached leg 0 and whose second got -EAGAIN on leg 0 itself
// leaves the legs different: the bit stays until the blocking redo.
TEST_F(MirrorSafety, NoWaitPartial_SplitAtExtentBoundary_BitKeptUntilTheRedo)
{
    Start();
    uint64_t es = p->extent_size, off = es - 4096;
    auto a = Pattern(8192, 51), b = Pattern(8192, 52), c = Pattern(4096, 53);
    ASSERT_EQ(vd_vol_pwrite(v, a.data(), a.size(), off, 0), 0); // bits durable
    __atomic_store_n(&f0->nowait_ok, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->nowait_ok, 1, __ATOMIC_RELEASE);
    uint64_t o2 = LegOff(p, 0, es);
    __atomic_store_n(&f0->nw_lo, o2, __ATOMIC_RELEASE);
    __atomic_store_n(&f0->nw_hi, o2 + 4096, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, VD_IO_NOWAIT), -EAGAIN);
    std::vector<char> want(a);
    memcpy(want.data(), b.data(), 4096); // leg 0: b's first piece, a's second
    ASSERT_EQ(ReadLeg(p, 0, off, 8192), want);
    ASSERT_EQ(ReadLeg(p, 1, off, 8192), a);
    // A later write elsewhere gets cleaned: the cleaner ran passes after
    // the NOWAIT write.
    ASSERT_EQ(vd_vol_pwrite(v, c.data(), c.size(), 9ull << 20, 0), 0);
    ASSERT_TRUE(WaitFor([&] { return Info(p).dirty_regions <= 2; }));
    EXPECT_EQ(Info(p).dirty_regions, 2u) << "the bits went while the legs differ";
    std::vector<char> r(8192);
    for (int i = 0; i < 2; i++) { // one read per leg if the bits were clear
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), off), 0);
        EXPECT_EQ(r, want);
    }
    __atomic_store_n(&f0->nw_hi, 0, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), off, 0), 0); // the redo
    ASSERT_TRUE(WaitClean(p));
    Verify(p, 0);
    Stop();
}

namespace {

// read_policy local (the default): clean reads go to the in-sync leg on a
// local device, not over the network; spread takes both legs in turn;
// with the local leg failed, the remote one serves.
TEST_F(MirrorTest, ReadPolicy_LocalLegPreferred_SpreadUsesBoth)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto w = Pattern(64 << 10, 3);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 1 << 20, 0), 0);
    ASSERT_EQ(vd_vol_flush(v), 0);
    ASSERT_TRUE(WaitClean(p)); // dirty regions read from the resync source
    uint32_t d0, d1;
    LegOff(p, 0, 1 << 20, &d0);
    LegOff(p, 1, 1 << 20, &d1);
    ASSERT_NE(d0, d1);
    FaultBdev *f0 = Wrap(p, d0), *f1 = Wrap(p, d1);
    p->devs[d0].remote = true; // leg 0 is "remote", leg 1 local
    std::vector<char> r(w.size());
    ASSERT_EQ(p->read_policy, VD_READ_LOCAL);
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 1 << 20), 0);
        ASSERT_EQ(r, w);
    }
    EXPECT_EQ(__atomic_load_n(&f0->reads, __ATOMIC_RELAXED), 0);
    EXPECT_EQ(__atomic_load_n(&f1->reads, __ATOMIC_RELAXED), 20);

    p->read_policy = VD_READ_SPREAD;
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 1 << 20), 0);
    EXPECT_EQ(__atomic_load_n(&f0->reads, __ATOMIC_RELAXED), 10);
    EXPECT_EQ(__atomic_load_n(&f1->reads, __ATOMIC_RELAXED), 30);

    // the local leg fails: the remote leg serves every read
    p->read_policy = VD_READ_LOCAL;
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->spare_md, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 1 << 20), 0);
        ASSERT_EQ(r, w);
    }
    EXPECT_GE(__atomic_load_n(&f0->reads, __ATOMIC_RELAXED), 15);
    vd_vol_close(v);
    vd_pool_close(p);
}

} // namespace
