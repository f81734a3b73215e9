// Unit tests for tiering (pool/heat.c, pool/tier.c): heat counting in the
// I/O path and its decay, the stream detector, the pass planner on
// synthetic heat maps (hottest slow extents promoted, the fast reserve
// kept, the coldest fast ones demoted when over it, hysteresis, mirror
// legs on their node, the rate limit), the op 24 records across a reopen,
// and the pool calls (heat through vd_vol_pread, plan, a pass moving the
// hot extent with the extent mover, data unchanged, tiering off).
#include <gtest/gtest.h>

#include <pthread.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "pool/tier.h"
#include "tests/unit/pool_fixture.h"

using vdtest_pool::PoolTest;

namespace
{

const uint64_t kEs = 4ull << 20;

// A volume with n data extents, enough for the heat counters.
struct FakeVol {
    vd_pool p{};
    vd_vol v{};
    explicit FakeVol(uint64_t n, uint32_t data_le0 = 0)
    {
        p.extent_size = kEs;
        v.pool = &p;
        v.le_count = n + data_le0;
        v.data_le0 = data_le0;
        EXPECT_EQ(vd_heat_alloc(&v), 0);
    }
    ~FakeVol()
    {
        vd_heat_free(&v);
    }
    uint32_t Reads(uint64_t e)
    {
        uint32_t r, w;
        vd_heat_get(v.heat, e, &r, &w);
        return r;
    }
    uint32_t Writes(uint64_t e)
    {
        uint32_t r, w;
        vd_heat_get(v.heat, e, &r, &w);
        return w;
    }
};

TEST(TierHeat, Count_ReadsAndWritesPerExtent)
{
    FakeVol f(8);
    // random-looking 4 KiB I/Os: never continuing each other
    for (int i = 0; i < 10; i++)
        vd_heat_count(&f.v, 3 * kEs + i * 65536, 4096, false);
    for (int i = 0; i < 4; i++)
        vd_heat_count(&f.v, 5 * kEs + i * 65536, 4096, true);
    // an I/O across a boundary counts on both extents
    vd_heat_count(&f.v, 2 * kEs - 4096, 8192, true);
    // beyond the counted extents (a volume extended later): ignored
    vd_heat_count(&f.v, 8 * kEs + 4096, 4096, false);
    EXPECT_EQ(f.Reads(3), 10u);
    EXPECT_EQ(f.Writes(3), 0u);
    EXPECT_EQ(f.Writes(5), 4u);
    EXPECT_EQ(f.Writes(1), 1u);
    EXPECT_EQ(f.Writes(2), 1u);
    EXPECT_EQ(f.Reads(0) + f.Reads(4) + f.Reads(6) + f.Reads(7), 0u);
}

TEST(TierHeat, Decay_HalvesAndRecordsHistory)
{
    FakeVol f(4);
    for (int i = 0; i < 100; i++)
        vd_heat_count(&f.v, 1 * kEs + (i % 50) * 65536, 4096, false);
    for (int i = 0; i < 7; i++)
        vd_heat_count(&f.v, 2 * kEs + i * 65536, 4096, true);
    vd_heat_decay(f.v.heat);
    EXPECT_EQ(f.Reads(1), 50u);
    EXPECT_EQ(f.Writes(2), 3u);
    vd_heat_decay(f.v.heat);
    EXPECT_EQ(f.Reads(1), 25u);
    EXPECT_EQ(f.Writes(2), 1u);
    ASSERT_EQ(f.v.heat->hist_len, 2u);
    // rows: the heat before each decay
    EXPECT_EQ(f.v.heat->hist[0 * 4 + 1], 100u);
    EXPECT_EQ(f.v.heat->hist[0 * 4 + 2], 7u);
    EXPECT_EQ(f.v.heat->hist[1 * 4 + 1], 50u);
    for (int i = 0; i < 20; i++)
        vd_heat_decay(f.v.heat);
    EXPECT_EQ(f.Reads(1), 0u);
    EXPECT_EQ(f.v.heat->hist_len, (uint32_t)VD_HEAT_HIST);
}

TEST(TierHeat, SequentialStream_Ignored_EvenWithRandomIoBetween)
{
    FakeVol f(16);
    // a 1 MiB sequential read of the whole volume, with random 4 KiB reads
    // of extent 15 interleaved
    for (uint64_t off = 0; off < 15 * kEs; off += 1 << 20) {
        vd_heat_count(&f.v, off, 1 << 20, false);
        vd_heat_count(&f.v, 15 * kEs + (off / 4096 % 97) * 8192, 4096, false);
    }
    uint32_t stream = 0;
    for (int e = 0; e < 15; e++)
        stream += f.Reads(e);
    // only the first I/O of the run counted, the rest of the stream not
    EXPECT_EQ(stream, 1u);
    EXPECT_GT(f.Reads(15), 50u);
    // small sequential I/O: the first 128 KiB of a run counted
    FakeVol g(2);
    for (uint64_t off = 0; off < kEs; off += 4096)
        vd_heat_count(&g.v, off, 4096, true);
    EXPECT_EQ(g.Writes(0), 32u);
}

struct Hammer {
    vd_vol *v;
    int id;
};
void *hammer(void *arg)
{
    auto *h = (Hammer *)arg;
    for (int i = 0; i < 100000; i++)
        vd_heat_count(h->v, kEs + ((uint64_t)(i * 4 + h->id) * 8192) % kEs,
                      4096, i & 1);
    return nullptr;
}

TEST(TierHeat, ConcurrentCounting_NoIncrementLost)
{
    FakeVol f(2);
    pthread_t t[4];
    Hammer h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = { &f.v, i };
        pthread_create(&t[i], nullptr, hammer, &h[i]);
    }
    for (auto &x : t)
        pthread_join(x, nullptr);
    EXPECT_EQ(f.Reads(1) + f.Writes(1), 400000u);
}

// ---- the planner ----------------------------------------------------------
struct Map {
    std::vector<uint32_t> tier, node;
    std::vector<uint64_t> free, total;
    bool usable[8];
    std::vector<vd_tier_cand> c;
    vd_tier_params pr{ 10, 0, VD_TIER_MIN_HEAT };

    uint32_t Dev(uint32_t t, uint64_t tot, uint64_t fr, uint32_t nd = 0)
    {
        tier.push_back(t);
        total.push_back(tot);
        free.push_back(fr);
        node.push_back(nd);
        usable[tier.size() - 1] = true;
        return (uint32_t)tier.size() - 1;
    }
    void Ext(uint64_t le, uint32_t dev, uint64_t heat, uint32_t leg = 0,
             uint32_t same_node = 0)
    {
        c.push_back({ 1, leg, le, dev, same_node, heat });
    }
    std::vector<vd_tier_move> Plan()
    {
        vd_tier_devs d{ (uint32_t)tier.size(), tier.data(), free.data(),
                        total.data(),          node.data(), usable };
        vd_tier_move *mv = nullptr;
        size_t n = 0;
        EXPECT_EQ(vd_tier_plan(c.data(), c.size(), &d, &pr, &mv, &n), 0);
        std::vector<vd_tier_move> out(mv, mv + n);
        free_moves(mv);
        return out;
    }
    static void free_moves(vd_tier_move *mv)
    {
        ::free(mv);
    }
    // what the mover would do
    void Apply(const std::vector<vd_tier_move> &mv)
    {
        for (auto &m : mv)
            for (auto &x : c)
                if (x.le == m.le && x.leg == m.leg && x.dev == m.from) {
                    x.dev = m.to;
                    free[m.from]++;
                    free[m.to]--;
                    break;
                }
    }
};

TEST(TierPlan, HotSlowExtents_Promoted_HottestFirst)
{
    Map m;
    uint32_t fast = m.Dev(VD_CONF_TIER_FAST, 20, 20);
    uint32_t slow = m.Dev(VD_CONF_TIER_SLOW, 100, 50);
    for (uint64_t le = 0; le < 50; le++)
        m.Ext(le, slow, (le % 10 == 3) ? 1000 + le : 2);
    auto mv = m.Plan();
    ASSERT_EQ(mv.size(), 5u);
    for (size_t i = 0; i < mv.size(); i++) {
        EXPECT_TRUE(mv[i].promote);
        EXPECT_EQ(mv[i].from, slow);
        EXPECT_EQ(mv[i].to, fast);
        EXPECT_EQ(mv[i].le % 10, 3u);
    }
    EXPECT_EQ(mv[0].le, 43u); // hottest first
}

TEST(TierPlan, MoreHotThanRoom_ReserveKept)
{
    Map m;
    m.pr.fast_free_pct = 25; // reserve 5 of 20
    m.Dev(VD_CONF_TIER_FAST, 20, 20);
    uint32_t slow = m.Dev(VD_CONF_TIER_SLOW, 100, 50);
    for (uint64_t le = 0; le < 50; le++)
        m.Ext(le, slow, 500 + le);
    auto mv = m.Plan();
    EXPECT_EQ(mv.size(), 15u); // 20 free - 5 reserve
    m.Apply(mv);
    EXPECT_EQ(m.free[0], 5u);
    // the 15 hottest went up
    for (auto &x : m.c)
        EXPECT_EQ(x.dev == 0, x.le >= 35) << x.le;
}

TEST(TierPlan, SecondPassUnchangedHeat_PlansNothing)
{
    Map m;
    m.Dev(VD_CONF_TIER_FAST, 10, 10);
    uint32_t slow = m.Dev(VD_CONF_TIER_SLOW, 100, 70);
    // more hot extents than the fast tier holds, heats close together
    for (uint64_t le = 0; le < 30; le++)
        m.Ext(le, slow, 100 + 3 * le);
    auto first = m.Plan();
    EXPECT_EQ(first.size(), 9u); // reserve ceil(10 * 10%) = 1
    m.Apply(first);
    EXPECT_TRUE(m.Plan().empty());
    // and again after a decay (every heat halved)
    for (auto &x : m.c)
        x.heat /= 2;
    EXPECT_TRUE(m.Plan().empty());
}

TEST(TierPlan, FastFull_MuchHotterSlowSwapsWithColdest_CloseOneDoesNot)
{
    Map m;
    m.pr.fast_free_pct = 0;
    uint32_t fast = m.Dev(VD_CONF_TIER_FAST, 4, 0);
    uint32_t slow = m.Dev(VD_CONF_TIER_SLOW, 100, 90);
    m.Ext(0, fast, 100);
    m.Ext(1, fast, 20); // coldest fast
    m.Ext(2, fast, 300);
    m.Ext(3, fast, 400);
    m.Ext(4, slow, 45); // < 2 * 20 + 8: no swap
    auto mv = m.Plan();
    EXPECT_TRUE(mv.empty());
    m.c.back().heat = 60; // >= 2 * 20 + 8
    mv = m.Plan();
    ASSERT_EQ(mv.size(), 2u);
    EXPECT_FALSE(mv[0].promote); // the demotion first: it makes the room
    EXPECT_EQ(mv[0].le, 1u);
    EXPECT_EQ(mv[0].to, slow);
    EXPECT_TRUE(mv[1].promote);
    EXPECT_EQ(mv[1].le, 4u);
    EXPECT_EQ(mv[1].to, fast);
    m.Apply(mv);
    EXPECT_TRUE(m.Plan().empty()); // no ping-pong
}

TEST(TierPlan, OverReserve_ColdestFastDemoted)
{
    Map m;
    m.pr.fast_free_pct = 30; // reserve 3 of 10, 1 free
    uint32_t fast = m.Dev(VD_CONF_TIER_FAST, 10, 1);
    uint32_t slow = m.Dev(VD_CONF_TIER_SLOW, 100, 90);
    for (uint64_t le = 0; le < 9; le++)
        m.Ext(le, fast, 50 + 10 * le);
    auto mv = m.Plan();
    ASSERT_EQ(mv.size(), 2u);
    EXPECT_EQ(mv[0].le, 0u);
    EXPECT_EQ(mv[1].le, 1u);
    for (auto &x : mv) {
        EXPECT_FALSE(x.promote);
        EXPECT_EQ(x.from, fast);
        EXPECT_EQ(x.to, slow);
    }
    m.Apply(mv);
    EXPECT_TRUE(m.Plan().empty());
}

TEST(TierPlan, ColdAndUnusableIgnored_RateLimitCaps)
{
    Map m;
    m.Dev(VD_CONF_TIER_FAST, 50, 50);
    uint32_t slow = m.Dev(VD_CONF_TIER_SLOW, 100, 50);
    uint32_t gone = m.Dev(VD_CONF_TIER_SLOW, 100, 50);
    m.usable[gone] = false;
    for (uint64_t le = 0; le < 10; le++)
        m.Ext(le, slow, VD_TIER_MIN_HEAT - 1); // too cold to move
    for (uint64_t le = 10; le < 20; le++)
        m.Ext(le, gone, 1000); // cannot be read
    EXPECT_TRUE(m.Plan().empty());
    for (uint64_t le = 20; le < 30; le++)
        m.Ext(le, slow, 1000);
    m.pr.max_moves = 3;
    EXPECT_EQ(m.Plan().size(), 3u);
}

TEST(TierPlan, MirrorLeg_PromotedOnItsOwnNodeOnly)
{
    Map m;
    uint32_t fast_a = m.Dev(VD_CONF_TIER_FAST, 10, 10, /*node*/ 0);
    uint32_t slow_a = m.Dev(VD_CONF_TIER_SLOW, 100, 90, 0);
    uint32_t slow_b = m.Dev(VD_CONF_TIER_SLOW, 100, 90, 1);
    m.Ext(0, slow_a, 1000, 0, 1);
    m.Ext(0, slow_b, 1000, 1, 1); // node b has no fast device
    auto mv = m.Plan();
    ASSERT_EQ(mv.size(), 1u);
    EXPECT_EQ(mv[0].leg, 0u);
    EXPECT_EQ(mv[0].to, fast_a);
}

// ---- the pool ---------------------------------------------------------------
TEST_F(PoolTest, Tier_RecordsSurviveReopen)
{
    devs[0].tier = VD_CONF_TIER_FAST;
    conf.tiering = { 1, 1, 30000, 1 << 20, 20 };
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_tier_configure(p, &conf), 0);
    uint64_t seq = p->seq;
    ASSERT_EQ(vd_tier_configure(p, &conf), 0);
    EXPECT_EQ(p->seq, seq); // nothing differs: no commit
    ASSERT_EQ(vd_vol_create(p, "v", 16 * kEs, nullptr), 0);
    ASSERT_EQ(vd_vol_set_tiering(p, "v", 0), 0);
    EXPECT_EQ(vd_vol_set_tiering(p, "nope", 0), -ENOENT);
    vd_pool_close(p);

    devs[0].tier = VD_CONF_TIER_SLOW; // the records, not the conf, count
    conf.tiering = {};
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->devs[0].tier, (uint32_t)VD_CONF_TIER_FAST);
    EXPECT_EQ(p->devs[1].tier, (uint32_t)VD_CONF_TIER_SLOW);
    struct vd_tier_info ti;
    struct vd_tier_ext *ext;
    size_t n;
    uint32_t *hist;
    ASSERT_EQ(vd_tier_get(p, "v", &ti, &ext, &n, &hist), 0);
    EXPECT_EQ(ti.vol_on, 0);
    EXPECT_EQ(ti.pool_enabled, 1);
    EXPECT_EQ(ti.interval_ms, 30000u);
    EXPECT_EQ(ti.rate, 1u << 20);
    EXPECT_EQ(ti.fast_free_pct, 20u);
    EXPECT_EQ(n, 16u);
    free(ext);
    free(hist);
    // a checkpoint carries them too
    struct vd_opbuf b = {};
    ASSERT_EQ(vd_state_serialize(p, &b), 0);
    int tier_ops = 0;
    for (size_t pos = 0; pos < b.len;) {
        auto *h = (const vd_op_hdr *)(b.buf + pos);
        tier_ops += h->type == VD_OP_TIER;
        pos += h->len;
    }
    EXPECT_EQ(tier_ops, 3); // pool settings, d0 fast, v off
    vd_opbuf_free(&b);
    ASSERT_EQ(vd_vol_set_tiering(p, "v", 1), 0);
    vd_pool_close(p);
}

TEST_F(PoolTest, Tier_IoHeatsExtent_PlanPromotesIt_RunMovesItWithProgress_DataUnchanged)
{
    devs[0].tier = VD_CONF_TIER_FAST;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_tier_configure(p, &conf), 0);
    ASSERT_EQ(vd_vol_create(p, "v", 12 * kEs, nullptr), 0);
    struct vd_tier_info ti;
    struct vd_tier_ext *ext;
    size_t n;
    uint32_t *hist;
    ASSERT_EQ(vd_tier_get(p, "v", &ti, &ext, &n, &hist), 0);
    uint64_t hot = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (ext[i].tier == VD_CONF_TIER_SLOW)
            hot = ext[i].le;
    free(ext);
    free(hist);
    ASSERT_NE(hot, UINT64_MAX);
    vd_vol *v = vd_vol_open(p, "v");
    ASSERT_NE(v, nullptr);
    char buf[4096];
    for (int i = 0; i < 200; i++)
        ASSERT_EQ(vd_vol_pread(v, buf, sizeof(buf),
                               hot * kEs + (uint64_t)(i * 37 % 1000) * 4096),
                  0);
    ASSERT_EQ(vd_vol_pwrite(v, buf, sizeof(buf), hot * kEs, 0), 0);
    vd_vol_close(v);
    ASSERT_EQ(vd_tier_get(p, "v", &ti, &ext, &n, &hist), 0);
    EXPECT_EQ(ext[hot].reads, 200u);
    EXPECT_EQ(ext[hot].writes, 1u);
    free(ext);
    free(hist);

    struct vd_tier_move *mv;
    size_t nmv;
    ASSERT_EQ(vd_tier_plan_vol(p, "v", &mv, &nmv), 0);
    ASSERT_EQ(nmv, 1u);
    EXPECT_EQ(mv[0].le, hot);
    EXPECT_TRUE(mv[0].promote);
    EXPECT_EQ(mv[0].to, 0u);
    free(mv);

    // the pass moves it (the extent mover), data unchanged
    std::vector<char> before(12 * kEs), after(12 * kEs);
    v = vd_vol_open(p, "v");
    ASSERT_NE(v, nullptr);
    for (size_t i = 0; i < before.size(); i++)
        before[i] = (char)(i * 131 / 7);
    // the same pattern everywhere but the hot extent, rewritten
    // sequentially (a stream: not counted)
    ASSERT_EQ(vd_vol_pwrite(v, before.data(), before.size(), 0, 0), 0);
    vd_vol_close(v);
    size_t moved = 0;
    // with progress: done never goes back, ends at total (an extent per
    // move), and tier status sees the pass while it runs, not after
    struct Pg {
        vd_pool *p;
        std::vector<std::pair<uint64_t, uint64_t>> calls;
        int seen_running = 0;
    } pg{ p, {}, 0 };
    auto cb = [](void *arg, uint64_t done, uint64_t total) {
        Pg *g = static_cast<Pg *>(arg);
        g->calls.emplace_back(done, total);
        struct vd_tier_info i;
        struct vd_tier_ext *e;
        size_t ne;
        uint32_t *h;
        if (vd_tier_get(g->p, "v", &i, &e, &ne, &h) == 0) {
            g->seen_running += i.pass_running && i.pass_done == done &&
                               i.pass_total == total;
            free(e);
            free(h);
        }
    };
    ASSERT_EQ(vd_tier_run_wait(p, "v", cb, &pg, &moved), 0);
    EXPECT_EQ(moved, 1u);
    ASSERT_GE(pg.calls.size(), 2u);
    for (size_t i = 0; i < pg.calls.size(); i++) {
        EXPECT_EQ(pg.calls[i].second, kEs);
        if (i) {
            EXPECT_GE(pg.calls[i].first, pg.calls[i - 1].first);
        }
    }
    EXPECT_EQ(pg.calls.front().first, 0u);
    EXPECT_EQ(pg.calls.back().first, kEs);
    EXPECT_EQ(pg.seen_running, (int)pg.calls.size());
    ASSERT_EQ(vd_tier_get(p, "v", &ti, &ext, &n, &hist), 0);
    EXPECT_FALSE(ti.pass_running);
    EXPECT_EQ(ext[hot].dev, 0u);
    EXPECT_EQ(ext[hot].tier, (uint32_t)VD_CONF_TIER_FAST);
    free(ext);
    free(hist);
    v = vd_vol_open(p, "v");
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(vd_vol_pread(v, after.data(), after.size(), 0), 0);
    EXPECT_TRUE(before == after);
    vd_vol_close(v);
    // unchanged heat: the next pass plans nothing
    ASSERT_EQ(vd_tier_plan_vol(p, "v", &mv, &nmv), 0);
    EXPECT_EQ(nmv, 0u);
    free(mv);
    // tiering off: refused, nothing moved
    ASSERT_EQ(vd_vol_set_tiering(p, "v", 0), 0);
    EXPECT_EQ(vd_tier_run(p, "v", 1, &moved), -EINVAL);
    vd_pool_close(p);
}

} // namespace
