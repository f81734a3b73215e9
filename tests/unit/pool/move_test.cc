// Unit tests for pool/move.c: the extent mover (writes during the copy,
// mirror legs' node rule, resume after a stop, evacuation).
// Shared fixtures: tests/unit/pool_fixture.h.
#include "tests/unit/pool_fixture.h"

#include <atomic>
#include <thread>

using namespace vdtest_pool;

namespace {

const uint64_t kEs = 4ull << 20;

// The background thread leaves moves alone while a test holds it: the
// test runs the copier itself (vd_move_run), chunk by chunk.
struct Hold {
    Hold() { __atomic_store_n(&g_move_test_hold, true, __ATOMIC_RELEASE); }
    ~Hold() { __atomic_store_n(&g_move_test_hold, false, __ATOMIC_RELEASE); }
};

vd_pe MapOf(vd_pool *p, const char *vol, uint64_t le, uint32_t leg)
{
    vd_vol *v = vd_vol_find(p, vol);
    return v->map[le * v->copies + leg];
}

std::vector<char> Pattern(uint64_t seed, size_t n)
{
    std::vector<char> b(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(seed * 131 + i * 7 + (i >> 12));
    return b;
}

bool ReadFile(const std::string &path, uint64_t off, std::vector<char> &b)
{
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0)
        return false;
    bool ok = pread(fd, b.data(), b.size(), off) == (ssize_t)b.size();
    close(fd);
    return ok;
}

TEST_F(PoolTest, Move_LinearExtent_ConcurrentWriters_EveryWriteReadsBackOnNewDevice)
{
    Hold hold;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 16ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    // the extent holds data before the move
    std::vector<char> base = Pattern(1, kEs);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), kEs, 0, 0), 0);
    vd_pe before = MapOf(p, "vol0", 0, 0);
    ASSERT_EQ(vd_move_extent(p, "vol0", 0, 0, nullptr, 0), 0);
    struct vd_move_status st;
    ASSERT_EQ(vd_pool_move_status(p, &st), 0);
    ASSERT_TRUE(st.active);
    EXPECT_EQ(st.src, std::string(p->devs[before.dev].name));
    uint32_t dst = VD_NO_DEV;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (st.dst == std::string(p->devs[i].name))
            dst = i;
    ASSERT_NE(dst, before.dev);

    // 3 writers: writer t owns the 4 KiB blocks b with b % 3 == t and
    // writes versions of them all over the extent while the copy runs
    const size_t kBlocks = kEs / 4096;
    std::vector<uint64_t> last(kBlocks, 0); // 0: base data
    std::atomic<bool> stop{ false };
    std::atomic<int> errors{ 0 };
    std::vector<std::thread> ws;
    for (int t = 0; t < 3; t++)
        ws.emplace_back([&, t] {
            uint64_t ver = 1;
            unsigned seed = 17 + t;
            while (!stop.load()) {
                size_t b = (rand_r(&seed) % (kBlocks / 3)) * 3 + t;
                if (b >= kBlocks)
                    continue;
                std::vector<char> w = Pattern(b * 1000 + ver, 4096);
                if (vd_vol_pwrite(v, w.data(), 4096, b * 4096, 0) != 0)
                    errors++;
                else
                    last[b] = b * 1000 + ver;
                ver++;
            }
        });
    int r = 1, rounds = 0;
    while (r == 1 && rounds++ < 200) {
        r = vd_move_run(p, 1000000000LL, 128 << 10);
        usleep(2000);
    }
    stop = true;
    for (auto &w : ws)
        w.join();
    ASSERT_EQ(r, 0);
    ASSERT_EQ(errors.load(), 0);
    vd_pe after = MapOf(p, "vol0", 0, 0);
    EXPECT_EQ(after.dev, dst);
    ASSERT_EQ(vd_pool_move_status(p, &st), 0);
    EXPECT_FALSE(st.active);
    EXPECT_EQ(st.stats.moves_done, 1u);
    EXPECT_EQ(st.stats.bytes_copied, kEs);
    // every acknowledged write reads back, through the volume and on the
    // new device itself
    std::vector<char> got(kEs);
    ASSERT_EQ(vd_vol_pread(v, got.data(), kEs, 0), 0);
    std::vector<char> raw(kEs);
    ASSERT_TRUE(ReadFile(paths[dst],
                         p->devs[dst].data_offset + after.pe * kEs, raw));
    size_t bad = 0, rewritten = 0;
    for (size_t b = 0; b < kBlocks; b++) {
        std::vector<char> want =
            last[b] ? Pattern(last[b], 4096)
                    : std::vector<char>(base.begin() + b * 4096,
                                        base.begin() + (b + 1) * 4096);
        rewritten += last[b] != 0;
        bad += memcmp(got.data() + b * 4096, want.data(), 4096) != 0;
        bad += memcmp(raw.data() + b * 4096, want.data(), 4096) != 0;
    }
    EXPECT_EQ(bad, 0u);
    EXPECT_GT(rewritten, 10u); // the writers did run during the copy
    // the old extent is free again
    EXPECT_FALSE(p->devs[before.dev].used[before.pe / 8] & (1u << (before.pe % 8)));
    vd_vol_close(v);
    vd_pool_close(p);
    // the switch is durable
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(MapOf(p, "vol0", 0, 0).dev, dst);
    v = vd_vol_open(p, "vol0");
    std::vector<char> again(kEs);
    ASSERT_EQ(vd_vol_pread(v, again.data(), kEs, 0), 0);
    EXPECT_EQ(again, got);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Move_StoppedAfterCheckpoint_ReopenResumesFromIt)
{
    Hold hold;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 16ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> base = Pattern(5, kEs);
    ASSERT_EQ(vd_vol_pwrite(v, base.data(), kEs, kEs, 0), 0);
    ASSERT_EQ(vd_move_extent(p, "vol0", 0, 1, nullptr, 0), 0);
    // 1 MiB copied: 4 chunks, a checkpoint
    ASSERT_EQ(vd_move_run(p, 10000000000LL, 1 << 20), 1);
    struct vd_move_status st;
    ASSERT_EQ(vd_pool_move_status(p, &st), 0);
    ASSERT_EQ(st.done, 1u << 20);
    std::string dstname = st.dst;
    // a write into the copied part after the checkpoint reaches both
    std::vector<char> w = Pattern(9, 8192);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), 8192, kEs + 65536, 0), 0);
    memcpy(base.data() + 65536, w.data(), 8192);
    vd_vol_close(v);
    vd_pool_close(p); // stops with no MOVE_END: the move is in the metadata

    // As after a crash where a write reached the source's media only: the
    // target differs from the source in the copied part.
    p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_pool_move_status(p, &st), 0);
    ASSERT_TRUE(st.active);
    EXPECT_EQ(st.done, 1u << 20);
    uint32_t dst = 0;
    while (dstname != p->devs[dst].name)
        dst++;
    uint64_t dpe = p->move ? 0 : 0;
    {
        // find the reserved target PE: the first used PE of dst that no
        // volume maps
        vd_vol *vv = vd_vol_find(p, "vol0");
        for (uint64_t pe = 0; pe < p->devs[dst].pe_count; pe++) {
            if (!(p->devs[dst].used[pe / 8] & (1u << (pe % 8))))
                continue;
            bool mapped = false;
            for (uint64_t k = 0; k < vv->le_count; k++)
                mapped |= vv->map[k].dev == dst && vv->map[k].pe == pe;
            if (!mapped) {
                dpe = pe;
                break;
            }
        }
        std::vector<char> junk(4096, 'J');
        int fd = open(paths[dst].c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(pwrite(fd, junk.data(), 4096,
                         p->devs[dst].data_offset + dpe * kEs + 65536),
                  4096);
        close(fd);
    }
    vd_pe src = MapOf(p, "vol0", 1, 0);
    ASSERT_EQ(vd_move_wait(p, 30000), 0);
    ASSERT_EQ(vd_pool_move_status(p, &st), 0);
    EXPECT_FALSE(st.active);
    // the part before the checkpoint was compared, not copied again; one
    // chunk was repaired
    EXPECT_EQ(st.stats.bytes_compared, 1u << 20);
    EXPECT_EQ(st.stats.bytes_copied, kEs - (1u << 20) + (256u << 10));
    EXPECT_LT(st.stats.bytes_copied, kEs);
    vd_pe now = MapOf(p, "vol0", 1, 0);
    EXPECT_EQ(now.dev, dst);
    EXPECT_EQ(now.pe, dpe);
    EXPECT_FALSE(p->devs[src.dev].used[src.pe / 8] & (1u << (src.pe % 8)));
    v = vd_vol_open(p, "vol0");
    std::vector<char> got(kEs);
    ASSERT_EQ(vd_vol_pread(v, got.data(), kEs, kEs), 0);
    EXPECT_TRUE(got == base);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Move_MirrorLeg_KeepsDistinctNodes)
{
    Hold hold;
    Define(4, 64ull << 20);
    const char *nodes[] = { "nodea", "nodea", "nodeb", "nodeb" };
    for (int i = 0; i < 4; i++)
        devs[i].node = (char *)nodes[i];
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    ASSERT_EQ(vd_vol_create(p, "m0", 8ull << 20, &o), 0);
    vd_vol *v = vd_vol_open(p, "m0");
    ASSERT_NE(v, nullptr);
    std::vector<char> w = Pattern(3, 8ull << 20);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), 0, 0), 0);
    vd_pe l0 = MapOf(p, "m0", 1, 0), l1 = MapOf(p, "m0", 1, 1);
    std::string n0 = p->devs[l0.dev].node, n1 = p->devs[l1.dev].node;
    ASSERT_NE(n0, n1);
    // to a device on the other leg's node: refused, nothing changed
    uint32_t other = VD_NO_DEV, same = VD_NO_DEV;
    for (uint32_t i = 0; i < 4; i++) {
        if (n1 == p->devs[i].node && i != l1.dev)
            other = i;
        if (n0 == p->devs[i].node && i != l0.dev)
            same = i;
    }
    ASSERT_NE(other, VD_NO_DEV);
    ASSERT_NE(same, VD_NO_DEV);
    EXPECT_EQ(vd_move_extent(p, "m0", 0, 1, p->devs[other].name, 0), -ENOSPC);
    struct vd_move_status st;
    ASSERT_EQ(vd_pool_move_status(p, &st), 0);
    EXPECT_FALSE(st.active);
    // anywhere: it stays on its own node
    ASSERT_EQ(vd_move_extent(p, "m0", 0, 1, nullptr, 0), 0);
    // writes during the move
    std::vector<char> w2 = Pattern(4, 65536);
    ASSERT_EQ(vd_move_run(p, 1000000000LL, 1 << 20), 1);
    ASSERT_EQ(vd_vol_pwrite(v, w2.data(), w2.size(), 4096, 0), 0);
    memcpy(w.data() + 4096, w2.data(), w2.size());
    ASSERT_EQ(vd_move_wait(p, 30000), 0);
    vd_pe moved = MapOf(p, "m0", 1, 0);
    EXPECT_EQ(moved.dev, same);
    EXPECT_EQ(std::string(p->devs[moved.dev].node), n0);
    // both legs hold the data: read each leg's extent from the files
    std::vector<char> a(kEs), b(kEs);
    vd_pe m1 = MapOf(p, "m0", 1, 1);
    ASSERT_TRUE(ReadFile(paths[moved.dev],
                         p->devs[moved.dev].data_offset + moved.pe * kEs, a));
    ASSERT_TRUE(ReadFile(paths[m1.dev],
                         p->devs[m1.dev].data_offset + m1.pe * kEs, b));
    EXPECT_TRUE(a == b);
    EXPECT_EQ(memcmp(a.data(), w.data(), kEs), 0);
    std::vector<char> got(w.size());
    ASSERT_EQ(vd_vol_pread(v, got.data(), got.size(), 0), 0);
    EXPECT_TRUE(got == w);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, Evacuate_DeviceWithTwoVolumes_Emptied_NoNewAllocations)
{
    Hold hold;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "a", 24ull << 20, nullptr), 0);
    ASSERT_EQ(vd_vol_create(p, "b", 24ull << 20, nullptr), 0);
    uint64_t on0 = vd_pool_dev_extents(p, "d0");
    ASSERT_GT(on0, 2u);
    std::vector<char> wa = Pattern(11, 24ull << 20), wb = Pattern(12, 24ull << 20);
    vd_vol *va = vd_vol_open(p, "a"), *vb = vd_vol_open(p, "b");
    ASSERT_EQ(vd_vol_pwrite(va, wa.data(), wa.size(), 0, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(vb, wb.data(), wb.size(), 0, 0), 0);
    // bad input changes nothing
    EXPECT_EQ(vd_dev_evacuate(p, "nosuch", nullptr, 0, 0), -ENOENT);
    const char *self[] = { "d0" };
    EXPECT_EQ(vd_dev_evacuate(p, "d0", self, 1, 0), -EINVAL);
    EXPECT_EQ(vd_pool_dev_extents(p, "d0"), on0);
    ASSERT_EQ(vd_dev_evacuate(p, "d0", nullptr, 0, 0), 0);
    // a new volume avoids the device being evacuated
    ASSERT_EQ(vd_vol_create(p, "c", 8ull << 20, nullptr), 0);
    EXPECT_EQ(vd_pool_dev_extents(p, "d0"), on0);
    ASSERT_EQ(vd_move_wait(p, 60000), 0);
    EXPECT_EQ(vd_pool_dev_extents(p, "d0"), 0u);
    EXPECT_EQ(p->devs[0].used_count, 0u);
    struct vd_move_status st;
    ASSERT_EQ(vd_pool_move_status(p, &st), 0);
    EXPECT_EQ(st.stats.moves_done, on0);
    EXPECT_EQ(st.stats.bytes_copied, on0 * kEs);
    std::vector<char> got(24ull << 20);
    ASSERT_EQ(vd_vol_pread(va, got.data(), got.size(), 0), 0);
    EXPECT_TRUE(got == wa);
    ASSERT_EQ(vd_vol_pread(vb, got.data(), got.size(), 0), 0);
    EXPECT_TRUE(got == wb);
    vd_vol_close(va);
    vd_vol_close(vb);
    vd_pool_close(p);
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_pool_dev_extents(p, "d0"), 0u);
    vd_pool_close(p);
}

TEST_F(PoolTest, Evacuate_NoRoomElsewhere_RefusedNothingChanged)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    // fill the pool: 3 x 15 data extents of 4 MiB in 64 MiB files
    uint64_t total = 0;
    struct vd_pool_info pi;
    ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
    for (uint32_t i = 0; i < p->ndevs; i++)
        total += p->devs[i].pe_count;
    ASSERT_EQ(vd_vol_create(p, "big", (total - 2) * kEs, nullptr), 0);
    uint64_t on0 = vd_pool_dev_extents(p, "d0");
    log_lines.clear();
    EXPECT_EQ(vd_dev_evacuate(p, "d0", nullptr, 0, 0), -ENOSPC);
    ASSERT_FALSE(log_lines.empty());
    EXPECT_NE(log_lines.back().find("free"), std::string::npos) << log_lines.back();
    EXPECT_EQ(vd_pool_dev_extents(p, "d0"), on0);
    EXPECT_FALSE(p->devs[0].no_alloc);
    vd_pool_close(p);
}

} // namespace
