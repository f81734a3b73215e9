// Unit tests for replica/resync.c: resync, failed legs coming back, rate limits.
// Shared fixtures: tests/unit/mirror_fixture.h.
#include "tests/unit/mirror_fixture.h"

using namespace vdtest_mirror;

TEST_F(MirrorTest, LegFails_WritesGoOn_LegReturns_ResyncCopiesOnlyDirty)
{
    vd_pool *p = Open();
    CreateMirror(p);
    vd_vol *v = vd_vol_open(p, "m");
    auto base = Pattern(16 << 20, 2);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
    // let the cleaner clear the bits (legs in sync, no writes for a pass)
    struct vd_mirror_info mi;
    for (int i = 0; i < 100; i++) {
        vd_mirror_get_info(p, "m", &mi);
        if (!mi.dirty_regions)
            break;
        usleep(50000);
    }
    ASSERT_EQ(mi.dirty_regions, 0u);

    FaultBdev *f = Wrap(p, LegDev(p, 1));
    __atomic_store_n(&f->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(8192, 3);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 5ull << 20, 0), 0);   // region 5
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 9ull << 20, 0), 0);   // region 9
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_FAILED);
    EXPECT_EQ(mi.dirty_regions, 2u);
    std::vector<char> r(8192);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 9ull << 20), 0);
    EXPECT_EQ(r, w);

    __atomic_store_n(&f->broken, 0, __ATOMIC_RELEASE); // the device is back
    bool synced = false;
    for (int i = 0; i < 200 && !synced; i++) {
        usleep(50000);
        vd_mirror_get_info(p, "m", &mi);
        synced = mi.legs[1].state == VD_LEG_INSYNC && mi.resync_state == VD_RESYNC_IDLE;
    }
    ASSERT_TRUE(synced);
    EXPECT_EQ(mi.total_bytes, 2ull << 20); // two regions, not the volume
    Verify(p, 0);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Defect 1: a target leg that fails during a resync pass keeps the bits of
// the regions the pass reaches after the failure.
TEST_F(MirrorSafety, Resync_TargetFailsDuringPass_BitsKept)
{
    Start();
    FailLeg1While(2, 5, 21);
    f1->gate.Arm(G_WRITE, LegOff(p, 1, 3ull << 20), LegOff(p, 1, 3ull << 20) + (1 << 20));
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE); // the probe brings it back
    ASSERT_TRUE(f1->gate.WaitHit()) << "resync never copied region 3";
    // While region 3 is being copied, leg 1 fails again (a write to region 9).
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(1 << 20, 22);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 9ull << 20, 0), 0);
    memcpy(base.data() + (9ull << 20), w.data(), w.size());
    ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    f1->gate.Release();
    // It comes back again; everything it missed must reach it.
    ASSERT_TRUE(WaitInSync(p));
    for (int r : { 2, 3, 4, 5, 9 })
        EXPECT_EQ(ReadLeg(p, 1, (uint64_t)r << 20, 1 << 20),
                  std::vector<char>(base.begin() + ((size_t)r << 20),
                                    base.begin() + ((size_t)(r + 1) << 20)))
            << "region " << r << " of leg 1";
    Verify(p, 0);
    Stop();
}

// Defect 14: resync clears bits (and marks legs in-sync) only after the
// copies were flushed.
TEST_F(MirrorSafety, Resync_BitsClearedOnlyAfterTheCopiesAreFlushed)
{
    Start();
    FailLeg1While(2, 5, 36);
    f1->gate.Arm(G_WRITE, LegOff(p, 1, 2ull << 20), LegOff(p, 1, 2ull << 20) + (1 << 20));
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(f1->gate.WaitHit()) << "resync never started";
    // from the first copy on, the next flush of leg 1 blocks
    f1->fgate.Arm(G_FLUSH, 0, 0);
    f1->gate.Release();
    ASSERT_TRUE(f1->fgate.WaitHit()) << "resync never flushed leg 1";
    auto mi = Info(p);
    EXPECT_EQ(mi.dirty_regions, 4u) << "bits cleared before the copies are durable";
    EXPECT_EQ(mi.legs[1].state, VD_LEG_STALE);
    f1->fgate.Release();
    ASSERT_TRUE(WaitInSync(p));
    Verify(p, 0);
    Stop();
}

// Defect 17: a tiny --rate neither overflows the wait nor stalls the
// replica thread: a new rate applies at once, and close returns.
TEST_F(MirrorSafety, Resync_TinyRate_RateChangeAppliesAndCloseReturns)
{
    Start();
    FailLeg1While(2, 5, 37);
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 1), 0); // 1 byte/s
    uint64_t o2 = LegOff(p, 1, 2ull << 20);
    f1->gate.Arm(G_WRITE, o2, o2 + (1 << 20), true);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(f1->gate.WaitHit()) << "first region never copied";
    f1->gate.Release();
    ASSERT_TRUE(WaitFor([&] { return Info(p).resync_state == VD_RESYNC_RUNNING; }));
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 0), 0);
    EXPECT_EQ(vd_mirror_resync_wait(p, "m", 15000), 0) << "the new rate did not apply";
    Verify(p, 0);
    // again at 1 byte/s, then close while it waits
    FailLeg1While(6, 7, 38);
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 1), 0);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(WaitFor([&] { return Info(p).legs[1].state == VD_LEG_STALE; }));
    vd_vol_close(v);
    v = nullptr;
    auto cl = std::async(std::launch::async, [&] { vd_pool_close(p); });
    EXPECT_EQ(cl.wait_for(std::chrono::seconds(10)), std::future_status::ready)
        << "close waited for the rate limit";
    cl.get();
    p = nullptr;
}

// A rate-limited resync pauses between regions; a target that fails and
// comes back during such a pause has missed copies: the resync starts over
// for it before marking it in-sync (3 legs: the pass goes on with the
// other target meanwhile).
TEST_F(MirrorSafety, Resync_RateLimited_TargetFailsAndReturns_CopiedAgain)
{
    p = Open();
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 3;
    o.region_size = 1ull << 20;
    ASSERT_EQ(vd_vol_create(p, "m", 16ull << 20, &o), 0);
    v = vd_vol_open(p, "m");
    base = Pattern(16 << 20, 40);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), base.size(), 0, 0), 0);
    ASSERT_TRUE(WaitClean(p));
    f1 = Wrap(p, LegDev(p, 1));
    FaultBdev *f2 = Wrap(p, LegDev(p, 2));
    f1->spare_md = f2->spare_md = 1; // leg failures can be recorded
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f2->broken, 1, __ATOMIC_RELEASE);
    auto w = Pattern(1 << 20, 41);
    for (int r = 0; r < 8; r++) {
        ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), (uint64_t)r << 20, 0), 0);
        memcpy(base.data() + ((size_t)r << 20), w.data(), w.size());
    }
    ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    ASSERT_EQ(Info(p).legs[2].state, VD_LEG_FAILED);
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 5ull << 20), 0); // 200 ms a region
    uint64_t o2 = LegOff(p, 1, 2ull << 20), o4 = LegOff(p, 2, 4ull << 20);
    f1->gate.Arm(G_WRITE, o2, o2 + (1 << 20), true);
    f2->gate.Arm(G_WRITE, o4, o4 + (1 << 20), true);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&f2->broken, 0, __ATOMIC_RELEASE);
    ASSERT_TRUE(f1->gate.WaitHit()) << "region 2 never copied to leg 1";
    f1->fgate.Arm(G_FLUSH, 0, 0); // the pause flushes the copies first
    f1->gate.Release();
    ASSERT_TRUE(f1->fgate.WaitHit());
    // leg 1 fails again (a write elsewhere) while the resync goes on; it
    // answers writes and flushes, but not the probe's read, for a while
    __atomic_store_n(&f1->broken, 1, __ATOMIC_RELEASE);
    auto x = Pattern(4096, 42);
    ASSERT_EQ(vd_vol_pwrite(v, x.data(), x.size(), 12ull << 20, 0), 0);
    memcpy(base.data() + (12ull << 20), x.data(), x.size());
    ASSERT_EQ(Info(p).legs[1].state, VD_LEG_FAILED);
    __atomic_store_n(&f1->bad_reads, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    f1->fgate.Release();
    ASSERT_TRUE(f2->gate.WaitHit()) << "region 4 never copied to leg 2";
    __atomic_store_n(&f1->bad_reads, 0, __ATOMIC_RELEASE); // back, during a pause
    f2->gate.Release();
    ASSERT_TRUE(WaitInSync(p));
    for (int leg = 1; leg < 3; leg++)
        EXPECT_EQ(ReadLeg(p, leg, 0, 16 << 20), base) << "leg " << leg;
    Verify(p, 0);
    Stop();
}

// Defect 15 (the mirror's own waits): a resync copy queues behind the
// writes in flight to its region, in arrival order; a stream of
// overlapping writes from several threads does not starve it.
TEST_F(MirrorSafety, Resync_StreamOfOverlappingWrites_CopyNotStarved)
{
    Start();
    FailLeg1While(3, 3, 43);
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < 8; t++)
        writers.emplace_back([&, t] {
            auto w = Pattern(512 << 10, 44 + t);
            while (!stop)
                if (vd_vol_pwrite(v, w.data(), w.size(), (3ull << 20) + ((t % 3) << 18), 0))
                    bad++;
        });
    __atomic_store_n(&f1->broken, 0, __ATOMIC_RELEASE);
    bool synced = WaitFor([&] { return Info(p).legs[1].state == VD_LEG_INSYNC; }, 15000);
    stop = true;
    for (auto &t : writers)
        t.join();
    EXPECT_TRUE(synced) << "resync starved by the writes";
    EXPECT_EQ(bad, 0);
    ASSERT_TRUE(WaitInSync(p));
    Verify(p, 0);
    Stop();
}

// M2 (vdsim seed 3447): the resync source leg fails while a copy waits for
// its region behind a write that missed the source.  The copy must not
// then read the failed source and write its old data over the only
// in-sync leg (the write, acknowledged there, would be lost).
TEST_F(MirrorSafety, Resync_SourceFailsWhileCopyWaits_InSyncLegNotOverwritten)
{
    Start();
    uint64_t r5 = 5ull << 20;
    uint64_t o0 = LegOff(p, 0, r5), o1 = LegOff(p, 1, r5);
    // W reaches neither leg 0 (its write fails there) nor, until released,
    // leg 1; it owns region 5 meanwhile.
    __atomic_store_n(&f0->fail_lo, o0, __ATOMIC_RELEASE);
    __atomic_store_n(&f0->fail_hi, o0 + (1 << 20), __ATOMIC_RELEASE);
    f1->gate.Arm(G_WRITE, o1, o1 + (1 << 20));
    auto w = Pattern(1 << 20, 50);
    auto wf = std::async(std::launch::async, [&] {
        return vd_vol_pwrite(v, w.data(), w.size(), r5, 0);
    });
    ASSERT_TRUE(f1->gate.WaitHit()) << "W never reached leg 1";
    int waits = g_range_waits.load();
    // Both legs in sync: leg 0 is the source, leg 1 the target; the pass
    // sees leg 0 in sync and queues its copy of region 5 behind W.
    ASSERT_EQ(vd_mirror_resync_start(p, "m", 0), 0);
    ASSERT_TRUE(WaitFor([&] { return g_range_waits.load() > waits; }))
        << "the copy of region 5 never waited for W";
    f1->gate.Release();
    ASSERT_EQ(wf.get(), 0); // acknowledged: on leg 1, leg 0 failed
    __atomic_store_n(&f0->fail_hi, 0, __ATOMIC_RELEASE);
    memcpy(base.data() + r5, w.data(), w.size());
    // Whatever the resync does next, leg 1 keeps W, and so does leg 0 once
    // it is back.
    ASSERT_TRUE(WaitInSync(p));
    EXPECT_EQ(ReadLeg(p, 1, r5, 1 << 20), w) << "W lost on the in-sync leg";
    EXPECT_EQ(ReadLeg(p, 0, r5, 1 << 20), w);
    std::vector<char> r(1 << 20);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), r5), 0);
    EXPECT_EQ(r, w);
    Verify(p, 0);
    Stop();
}
