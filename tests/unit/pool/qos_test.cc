// pool/qos.c: the token-bucket limiter (arithmetic, bursts, read/write
// split, limit changes) and the limits as metadata op 13 (round trip through
// a reopen, refusal of bad values leaving the state unchanged).
#include "../pool_fixture.h"

using namespace vdtest_pool;

namespace {

const uint64_t S = 1000000000ull; // ns per second

struct vd_qos_limits Limits(uint64_t iops, uint64_t bps = 0, uint32_t burst_ms = 0)
{
    struct vd_qos_limits l;
    memset(&l, 0, sizeof(l));
    l.limit[VD_QOS_IOPS] = iops;
    l.limit[VD_QOS_BPS] = bps;
    l.burst_ms = burst_ms;
    return l;
}

// Commands of `bytes` admitted back to back over [0, dur_ns), each one as
// soon as the limiter allows (the time it names), as the module's timer does.
uint64_t RunFor(struct vd_qos *q, bool write, uint64_t bytes, uint64_t t0,
             uint64_t dur_ns, uint64_t *t_end = nullptr)
{
    uint64_t t = t0, n = 0, wait = 0;
    while (t < t0 + dur_ns) {
        if (vd_qos_admit(q, write, bytes, t, &wait)) {
            n++;
        } else {
            EXPECT_GT(wait, 0u);
            t += wait;
        }
    }
    if (t_end)
        *t_end = t;
    return n;
}

} // namespace

TEST(QosBucket, NoLimits_AdmitsEverything)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    struct vd_qos_limits l = Limits(0);
    vd_qos_configure(&q, &l, 0);
    EXPECT_FALSE(q.active);
    uint64_t wait = 0;
    for (int i = 0; i < 100000; i++)
        ASSERT_TRUE(vd_qos_admit(&q, i & 1, 1 << 20, 5, &wait));
}

TEST(QosBucket, Iops_BurstThenExactRate)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    struct vd_qos_limits l = Limits(500); // burst default 1 s: depth 500
    vd_qos_configure(&q, &l, 1000);
    uint64_t wait = 0;
    // A full bucket: 500 commands at once, the 501st waits 2 ms.
    for (int i = 0; i < 500; i++)
        ASSERT_TRUE(vd_qos_admit(&q, false, 4096, 1000, &wait)) << i;
    ASSERT_FALSE(vd_qos_admit(&q, false, 4096, 1000, &wait));
    EXPECT_EQ(wait, S / 500);
    // Then exactly 500 per second over 10 s (+1 for the boundary).
    uint64_t n = RunFor(&q, false, 4096, 1000, 10 * S);
    EXPECT_NEAR((double)n, 5000, 1);
}

TEST(QosBucket, Burst_DepthIsLimitTimesSeconds_RefillsWhileIdle)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    struct vd_qos_limits l = Limits(100, 0, 3000); // depth 300
    vd_qos_configure(&q, &l, 0);
    uint64_t wait = 0, n = 0;
    while (vd_qos_admit(&q, true, 512, 0, &wait))
        n++;
    EXPECT_EQ(n, 300u);
    // Idle 1.5 s: 150 tokens back; idle 10 s: full again, never more.
    n = 0;
    while (vd_qos_admit(&q, true, 512, S * 3 / 2, &wait))
        n++;
    EXPECT_EQ(n, 150u);
    n = 0;
    while (vd_qos_admit(&q, true, 512, 20 * S, &wait))
        n++;
    EXPECT_EQ(n, 300u);
}

TEST(QosBucket, Bytes_LargeCommandRunsWhenFullAndIsPaidBack)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    // 1 MiB/s with a 0.1 s burst: depth 104857 bytes, smaller than a command.
    struct vd_qos_limits l = Limits(0, 1 << 20, 100);
    vd_qos_configure(&q, &l, 0);
    uint64_t wait = 0;
    ASSERT_TRUE(vd_qos_admit(&q, true, 1 << 20, 0, &wait)); // full: runs
    ASSERT_FALSE(vd_qos_admit(&q, true, 4096, 0, &wait));
    // The debt (1 MiB - depth) plus one full depth: about 1 s.
    EXPECT_GE(wait, S * 9 / 10);
    EXPECT_LE(wait, S * 11 / 10);
    // Long run with 256 KiB commands: 1 MiB/s within one command.
    uint64_t n = RunFor(&q, true, 256 << 10, wait, 20 * S);
    EXPECT_GE(n * (256 << 10), 19ull << 20);
    EXPECT_LE(n * (256 << 10), 21ull << 20);
}

TEST(QosBucket, ReadWriteSplit_EachDirectionItsOwnBucket)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    struct vd_qos_limits l;
    memset(&l, 0, sizeof(l));
    l.limit[VD_QOS_RIOPS] = 100;
    l.limit[VD_QOS_WIOPS] = 10;
    l.burst_ms = 1000;
    vd_qos_configure(&q, &l, 0);
    uint64_t wait = 0, r = 0, w = 0;
    while (vd_qos_admit(&q, true, 4096, 0, &wait))
        w++;
    while (vd_qos_admit(&q, false, 4096, 0, &wait))
        r++;
    EXPECT_EQ(w, 10u); // writes used up theirs; reads still had 100
    EXPECT_EQ(r, 100u);
    EXPECT_NEAR((double)RunFor(&q, false, 4096, 0, 5 * S), 500, 1);
    // Writes: full again after 5 s idle (depth 10), then 10/s.
    EXPECT_NEAR((double)RunFor(&q, true, 4096, 5 * S, 5 * S), 10 + 50, 1);
}

TEST(QosBucket, TotalLimit_SharedByReadsAndWrites)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    struct vd_qos_limits l = Limits(200, 0, 1);
    vd_qos_configure(&q, &l, 0);
    uint64_t t = 0, n = 0, wait = 0;
    for (int i = 0; t < 10 * S; i++) {
        if (vd_qos_admit(&q, i & 1, 4096, t, &wait))
            n++;
        else
            t += wait;
    }
    EXPECT_NEAR((double)n, 2000, 1);
}

TEST(QosBucket, LimitChangedWhileWaiting_NewRateAtOnceZeroRemoves)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    struct vd_qos_limits l = Limits(100, 0, 1000);
    vd_qos_configure(&q, &l, 0);
    uint64_t wait = 0, end = 0;
    RunFor(&q, false, 4096, 0, S, &end);
    while (vd_qos_admit(&q, false, 4096, end, &wait)) // empty now
        ;
    EXPECT_EQ(wait, S / 100);
    // Raised to 1000/s: the bucket keeps what it holds (nothing), the
    // waiting command is admitted after 1 ms, then 1000/s.
    l = Limits(1000, 0, 1000);
    vd_qos_configure(&q, &l, end);
    ASSERT_FALSE(vd_qos_admit(&q, false, 4096, end, &wait));
    EXPECT_EQ(wait, S / 1000);
    uint64_t n = RunFor(&q, false, 4096, end, 5 * S);
    EXPECT_NEAR((double)n, 5000, 1);
    // Lowered: tokens cut to the new depth.
    l = Limits(10, 0, 1000);
    vd_qos_configure(&q, &l, 100 * S); // idle long: full at 1000, cut to 10
    n = 0;
    while (vd_qos_admit(&q, false, 4096, 100 * S, &wait))
        n++;
    EXPECT_EQ(n, 10u);
    // 0 removes the limit: everything passes at the same instant.
    l = Limits(0);
    vd_qos_configure(&q, &l, 100 * S);
    for (int i = 0; i < 10000; i++)
        ASSERT_TRUE(vd_qos_admit(&q, false, 4096, 100 * S, &wait));
}

TEST(QosBucket, HugeRates_NoOverflow)
{
    struct vd_qos q;
    memset(&q, 0, sizeof(q));
    struct vd_qos_limits l = Limits(VD_QOS_IOPS_MAX, VD_QOS_BPS_MAX,
                                    VD_QOS_BURST_MS_MAX);
    vd_qos_configure(&q, &l, 0);
    uint64_t wait = 0;
    EXPECT_TRUE(vd_qos_admit(&q, true, 64 << 20, 0, &wait));
    EXPECT_TRUE(vd_qos_admit(&q, true, 64 << 20, 3600 * S * 1000, &wait));
}

// ---- metadata --------------------------------------------------------------

TEST_F(PoolTest, QosOp13_RoundTripThroughReopenAndCheckpoint)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    ASSERT_EQ(vd_vol_create(p, "vol1", 8ull << 20, nullptr), 0);
    struct vd_qos_limits l;
    memset(&l, 0, sizeof(l));
    l.limit[VD_QOS_IOPS] = 500;
    l.limit[VD_QOS_WBPS] = 10 << 20;
    l.burst_ms = 2500;
    ASSERT_EQ(vd_vol_qos_set(p, "vol0", &l,
                             (1u << VD_QOS_IOPS) | (1u << VD_QOS_WBPS) |
                                 VD_QOS_MASK_BURST),
              0);
    // A second set changes only what its mask names.
    struct vd_qos_limits l2;
    memset(&l2, 0, sizeof(l2));
    l2.limit[VD_QOS_RIOPS] = 77;
    l2.limit[VD_QOS_IOPS] = 999; // not in the mask: ignored
    ASSERT_EQ(vd_vol_qos_set(p, "vol0", &l2, 1u << VD_QOS_RIOPS), 0);
    vd_pool_close(p);

    p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_qos_limits got;
    ASSERT_EQ(vd_vol_qos_get_by_name(p, "vol0", &got), 0);
    EXPECT_EQ(got.limit[VD_QOS_IOPS], 500u);
    EXPECT_EQ(got.limit[VD_QOS_RIOPS], 77u);
    EXPECT_EQ(got.limit[VD_QOS_WIOPS], 0u);
    EXPECT_EQ(got.limit[VD_QOS_WBPS], 10u << 20);
    EXPECT_EQ(got.burst_ms, 2500u);
    ASSERT_EQ(vd_vol_qos_get_by_name(p, "vol1", &got), 0);
    EXPECT_FALSE(vd_qos_limits_any(&got));

    // Many commits force checkpoints (vd_state_serialize): limits survive.
    for (int i = 0; i < 300; i++) {
        l.limit[VD_QOS_BPS] = 1000 + i;
        ASSERT_EQ(vd_vol_qos_set(p, "vol1", &l, 1u << VD_QOS_BPS), 0);
    }
    // 0 removes a limit.
    memset(&l, 0, sizeof(l));
    ASSERT_EQ(vd_vol_qos_set(p, "vol0", &l, 1u << VD_QOS_IOPS), 0);
    vd_pool_close(p);

    p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_qos_get_by_name(p, "vol0", &got), 0);
    EXPECT_EQ(got.limit[VD_QOS_IOPS], 0u);
    EXPECT_EQ(got.limit[VD_QOS_RIOPS], 77u);
    EXPECT_EQ(got.burst_ms, 2500u);
    ASSERT_EQ(vd_vol_qos_get_by_name(p, "vol1", &got), 0);
    EXPECT_EQ(got.limit[VD_QOS_BPS], 1299u);
    // Removing a volume removes its limits (no op names a missing volume).
    ASSERT_EQ(vd_vol_remove(p, "vol1"), 0);
    vd_pool_close(p);
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_vol_qos_get_by_name(p, "vol1", &got), -ENOENT);
    vd_pool_close(p);
}

TEST_F(PoolTest, QosSet_BadValuesOrVolume_RefusedNothingCommitted)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    struct vd_qos_limits l;
    memset(&l, 0, sizeof(l));
    l.limit[VD_QOS_IOPS] = 100;
    ASSERT_EQ(vd_vol_qos_set(p, "vol0", &l, 1u << VD_QOS_IOPS), 0);
    struct vd_pool_info pi;
    ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
    uint64_t seq = pi.seq;

    l.limit[VD_QOS_IOPS] = VD_QOS_IOPS_MAX + 1;
    EXPECT_EQ(vd_vol_qos_set(p, "vol0", &l, 1u << VD_QOS_IOPS), -EINVAL);
    l.limit[VD_QOS_IOPS] = 5;
    l.burst_ms = VD_QOS_BURST_MS_MAX + 1;
    EXPECT_EQ(vd_vol_qos_set(p, "vol0", &l, VD_QOS_MASK_BURST), -EINVAL);
    EXPECT_EQ(vd_vol_qos_set(p, "nosuch", &l, 1u << VD_QOS_IOPS), -ENOENT);
    ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
    EXPECT_EQ(pi.seq, seq); // no commit
    struct vd_qos_limits got;
    ASSERT_EQ(vd_vol_qos_get_by_name(p, "vol0", &got), 0);
    EXPECT_EQ(got.limit[VD_QOS_IOPS], 100u);
    EXPECT_EQ(got.burst_ms, 0u);
    vd_pool_close(p);
}
