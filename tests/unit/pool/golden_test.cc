// The on-disk format pinned by a committed image (tests/golden/, made by
// tests/golden/make-golden.c; docs/format.md describes every byte used
// here).  The test reads the image twice: once by hand, the way a second
// implementer would from docs/format.md alone (device header, metadata
// records and their chain, ops, extents), and once through the library;
// both must find the same pool, volumes, mapping and data.  A change that
// breaks it is a format change: bump the format version, keep reading
// this image, and add a new one.
#include <gtest/gtest.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "pool/pool_int.h"
#include "replica/vdreplica.h"

namespace {

const uint64_t MiB = 1ull << 20;

struct RawVol {
    uint32_t layout = 0, copies = 0, flags = 0;
    uint64_t size = 0, le_count = 0;
    std::string name;
    // [le * copies + leg] = (dev, pe)
    std::vector<std::pair<uint32_t, uint64_t>> map;
};

class Golden : public ::testing::Test {
  protected:
    std::string dir;
    std::vector<struct vd_conf_dev> devs;
    std::string p0, p1;
    struct vd_conf_pool conf;

    static std::string ImagePath()
    {
        std::string f = __FILE__; // tests/unit/pool/golden_test.cc
        return f.substr(0, f.rfind("/unit/pool/")) + "/golden/pool-v1.0.tar.gz";
    }
    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-golden-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", (dir + "/run").c_str(), 1);
        std::string cmd = "tar -C '" + dir + "' -xzf '" + ImagePath() + "'";
        ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
        p0 = dir + "/d0.img";
        p1 = dir + "/d1.img";
        devs.assign(2, {});
        devs[0].name = (char *)"d0";
        devs[0].path = (char *)p0.c_str();
        devs[0].node = (char *)"n0";
        devs[1].name = (char *)"d1";
        devs[1].path = (char *)p1.c_str();
        devs[1].node = (char *)"n1";
        memset(&conf, 0, sizeof(conf));
        conf.file = (char *)"golden.yaml";
        conf.name = (char *)"golden";
        conf.extent_size = MiB;
        conf.ndevs = 2;
        conf.devs = devs.data();
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    static std::vector<uint8_t> ReadFile(const std::string &path)
    {
        std::vector<uint8_t> b;
        FILE *f = fopen(path.c_str(), "rb");
        if (!f)
            return b;
        b.resize(8 * MiB);
        b.resize(fread(b.data(), 1, b.size(), f));
        fclose(f);
        return b;
    }
    static std::vector<uint8_t> Pattern(size_t n, unsigned seed)
    {
        std::vector<uint8_t> v(n);
        for (size_t i = 0; i < n; i++)
            v[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 9));
        return v;
    }
    template <typename T> static T Get(const std::vector<uint8_t> &b, size_t off)
    {
        T v;
        memcpy(&v, b.data() + off, sizeof(v));
        return v;
    }
};

// Everything a second implementer needs, read by hand: header fields at
// their documented offsets, the record chain of the newest half, the ops,
// the extents.
TEST_F(Golden, ReadByHand_HeaderRecordsOpsAndData)
{
    std::vector<uint8_t> img[2] = { ReadFile(p0), ReadFile(p1) };
    for (int i = 0; i < 2; i++) {
        const std::vector<uint8_t> &b = img[i];
        ASSERT_EQ(b.size(), 8 * MiB);
        EXPECT_EQ(memcmp(b.data(), "VDLVMDV1", 8), 0);
        EXPECT_EQ(Get<uint16_t>(b, 8), 1);     // major
        EXPECT_EQ(Get<uint16_t>(b, 10), 0);    // minor
        EXPECT_EQ(Get<uint32_t>(b, 12), 4096u);
        std::vector<uint8_t> h(b.begin(), b.begin() + 4096);
        memset(h.data() + 16, 0, 4);
        EXPECT_EQ(Get<uint32_t>(b, 16), vd_crc32c(0, h.data(), 4096));
        EXPECT_EQ(Get<uint64_t>(b, 56), 8 * MiB);  // dev_size
        EXPECT_EQ(Get<uint64_t>(b, 64), MiB);      // extent_size
        EXPECT_EQ(Get<uint64_t>(b, 72), MiB);      // md_offset
        EXPECT_EQ(Get<uint64_t>(b, 80), 4 * MiB);  // md_size
        EXPECT_EQ(Get<uint64_t>(b, 88), 5 * MiB);  // data_offset
        EXPECT_EQ(Get<uint64_t>(b, 96), 3u);       // pe_count
        EXPECT_EQ(Get<uint32_t>(b, 104), (uint32_t)i);
        EXPECT_STREQ((const char *)b.data() + 112, "golden");
        EXPECT_STREQ((const char *)b.data() + 176, i ? "d1" : "d0");
        EXPECT_EQ(memcmp(b.data() + 24, img[0].data() + 24, 16), 0); // pool uuid
    }

    // The newest valid chain over both halves of copy 0: checkpoint at
    // offset 0 of a half, deltas with consecutive seq at 4 KiB boundaries.
    const std::vector<uint8_t> &b = img[0];
    uint64_t best_seq = 0;
    int best_half = -1;
    std::vector<std::pair<size_t, size_t>> best_recs; // (payload off, len)
    for (int half = 0; half < 2; half++) {
        size_t base = MiB + half * 2 * MiB, pos = 0;
        uint64_t seq = 0;
        std::vector<std::pair<size_t, size_t>> recs;
        while (pos + 64 <= 2 * MiB) {
            size_t r = base + pos;
            if (memcmp(b.data() + r, "VDLVMMD1", 8) || Get<uint16_t>(b, r + 8) != 1 ||
                Get<uint32_t>(b, r + 12) != 64 ||
                memcmp(b.data() + r + 40, b.data() + 24, 16))
                break;
            uint64_t plen = Get<uint64_t>(b, r + 32);
            if (plen > 2 * MiB - pos - 64)
                break;
            std::vector<uint8_t> hh(b.begin() + r, b.begin() + r + 64);
            memset(hh.data() + 16, 0, 4);
            uint32_t crc = vd_crc32c(vd_crc32c(0, hh.data(), 64), b.data() + r + 64, plen);
            if (crc != Get<uint32_t>(b, r + 16))
                break;
            uint32_t kind = Get<uint32_t>(b, r + 20);
            uint64_t s = Get<uint64_t>(b, r + 24);
            if (pos == 0 ? kind != 1 : (kind != 2 || s != seq + 1))
                break;
            seq = s;
            recs.push_back({ r + 64, plen });
            pos += (64 + plen + 4095) / 4096 * 4096;
        }
        if (seq > best_seq) {
            best_seq = seq;
            best_half = half;
            best_recs = recs;
        }
    }
    ASSERT_GE(best_half, 0);
    EXPECT_GE(best_seq, 3u); // pool creation, lin, mir at least

    // Replay the ops.
    std::map<uint32_t, RawVol> vols;
    std::string pool_name;
    uint64_t extent_size = 0;
    uint32_t ndevs = 0;
    for (auto &rp : best_recs) {
        size_t pos = rp.first, end = rp.first + rp.second;
        while (pos < end) {
            uint16_t type = Get<uint16_t>(b, pos), len = Get<uint16_t>(b, pos + 2);
            ASSERT_GE(len, 8);
            switch (type) {
            case 1: // VD_OP_POOL
                extent_size = Get<uint64_t>(b, pos + 24);
                pool_name = (const char *)b.data() + pos + 32;
                break;
            case 2: // VD_OP_DEV_ADD
                ndevs++;
                break;
            case 3: { // VD_OP_VOL_CREATE
                RawVol v;
                v.layout = Get<uint32_t>(b, pos + 12);
                v.copies = Get<uint32_t>(b, pos + 16);
                v.flags = Get<uint32_t>(b, pos + 20);
                v.size = Get<uint64_t>(b, pos + 24);
                v.le_count = Get<uint64_t>(b, pos + 32);
                v.name = (const char *)b.data() + pos + 40;
                v.map.assign(v.le_count * v.copies, { VD_NO_DEV, 0 });
                vols[Get<uint32_t>(b, pos + 8)] = v;
                break;
            }
            case 6: { // VD_OP_MAP
                RawVol &v = vols.at(Get<uint32_t>(b, pos + 8));
                uint32_t leg = Get<uint32_t>(b, pos + 12);
                uint64_t le = Get<uint64_t>(b, pos + 16), n = Get<uint64_t>(b, pos + 24);
                uint32_t dev = Get<uint32_t>(b, pos + 32);
                uint64_t pe = Get<uint64_t>(b, pos + 40);
                for (uint64_t k = 0; k < n; k++)
                    v.map[(le + k) * v.copies + leg] = { dev, dev == VD_NO_DEV ? 0 : pe + k };
                break;
            }
            case 7: // mirror leg state
            case 8: // mirror resync progress
                break;
            default:
                FAIL() << "unexpected op type " << type;
            }
            pos += len;
        }
    }
    EXPECT_EQ(pool_name, "golden");
    EXPECT_EQ(extent_size, MiB);
    EXPECT_EQ(ndevs, 2u);
    ASSERT_EQ(vols.size(), 2u);
    const RawVol *lin = nullptr, *mir = nullptr;
    for (auto &kv : vols)
        (kv.second.name == "lin" ? lin : mir) = &kv.second;
    ASSERT_TRUE(lin && mir);
    EXPECT_EQ(mir->name, "mir");
    EXPECT_EQ(lin->layout, 0u);
    EXPECT_EQ(lin->copies, 1u);
    EXPECT_EQ(lin->size, MiB);
    EXPECT_EQ(lin->le_count, 1u);
    EXPECT_EQ(mir->layout, 1u);
    EXPECT_EQ(mir->copies, 2u);
    EXPECT_EQ(mir->flags & 0xff, 16u); // log2(64 KiB)
    EXPECT_EQ(mir->size, MiB);
    EXPECT_EQ(mir->le_count, 2u);      // bitmap extent + 1 data extent

    // Data: byte i of logical extent le of a leg is at
    // data_offset + pe * extent_size + i on its device.
    auto ext = [&](std::pair<uint32_t, uint64_t> e) {
        EXPECT_LT(e.first, 2u);
        const std::vector<uint8_t> &d = img[e.first < 2 ? e.first : 0];
        size_t off = 5 * MiB + e.second * MiB;
        return std::vector<uint8_t>(d.begin() + off, d.begin() + off + MiB);
    };
    EXPECT_EQ(ext(lin->map[0]), Pattern(MiB, 1));
    for (uint32_t leg = 0; leg < 2; leg++) {
        EXPECT_EQ(ext(mir->map[1 * 2 + leg]), Pattern(MiB, 2)) << "leg " << leg;
        // The write-intent bitmap (logical extent 0 of each leg): one bit
        // per region, 16 regions; nothing set beyond them.
        std::vector<uint8_t> bm = ext(mir->map[0 * 2 + leg]);
        for (size_t k = 2; k < bm.size(); k++)
            ASSERT_EQ(bm[k], 0) << "leg " << leg << " bitmap byte " << k;
    }
    EXPECT_NE(mir->map[0].first, mir->map[1].first); // legs on two devices
}

TEST_F(Golden, OpenedByTheLibrary_SamePoolVolumesMappingAndData)
{
    vd_pool *p = nullptr;
    ASSERT_EQ(vd_pool_open(&conf, &p), 0);
    struct vd_pool_info pi;
    ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
    EXPECT_STREQ(pi.name, "golden");
    EXPECT_EQ(pi.extent_size, MiB);
    EXPECT_EQ(pi.ndevs, 2u);
    EXPECT_EQ(pi.nvols, 2u);
    EXPECT_EQ(pi.total_bytes, 6 * MiB);
    EXPECT_EQ(pi.used_bytes, 5 * MiB);

    struct vd_vol_info vi;
    ASSERT_EQ(vd_vol_get_info(p, "lin", &vi), 0);
    EXPECT_EQ(vi.size, MiB);
    EXPECT_EQ(vi.layout, VD_LAYOUT_LINEAR);
    EXPECT_EQ(vi.copies, 1u);
    ASSERT_EQ(vd_vol_get_info(p, "mir", &vi), 0);
    EXPECT_EQ(vi.size, MiB);
    EXPECT_EQ(vi.layout, VD_LAYOUT_MIRROR);
    EXPECT_EQ(vi.copies, 2u);

    // The mapping as made by make-golden.c: lin on d0 pe 0; mir leg 0 on
    // d1 (bitmap pe 0, data pe 1), leg 1 on d0 (bitmap pe 1, data pe 2).
    struct vd_run *runs = nullptr;
    size_t n = 0;
    ASSERT_EQ(vd_vol_get_runs(p, "lin", &runs, &n), 0);
    ASSERT_EQ(n, 1u);
    EXPECT_EQ(runs[0].dev, 0u);
    EXPECT_EQ(runs[0].pe_start, 0u);
    EXPECT_EQ(runs[0].count, 1u);
    free(runs);
    ASSERT_EQ(vd_vol_get_runs(p, "mir", &runs, &n), 0);
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(runs[0].leg, 0u);
    EXPECT_EQ(runs[0].dev, 1u);
    EXPECT_EQ(runs[0].pe_start, 1u);
    EXPECT_EQ(runs[0].count, 1u);
    EXPECT_EQ(runs[1].leg, 1u);
    EXPECT_EQ(runs[1].dev, 0u);
    EXPECT_EQ(runs[1].pe_start, 2u);
    EXPECT_EQ(runs[1].count, 1u);
    free(runs);

    std::vector<uint8_t> got(MiB);
    vd_vol *v = vd_vol_open(p, "lin");
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(vd_vol_pread(v, got.data(), MiB, 0), 0);
    EXPECT_EQ(got, Pattern(MiB, 1));
    vd_vol_close(v);
    v = vd_vol_open(p, "mir");
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(vd_vol_pread(v, got.data(), MiB, 0), 0);
    EXPECT_EQ(got, Pattern(MiB, 2));
    vd_vol_close(v);
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "mir", &mi), 0);
    EXPECT_EQ(mi.region_size, 64ull << 10);
    EXPECT_EQ(mi.legs[0].state, VD_LEG_INSYNC);
    EXPECT_EQ(mi.legs[1].state, VD_LEG_INSYNC);
    vd_pool_close(p);

    // The 1.0 bitmaps (no header) were read as they are, and got their
    // 1.1 header at open: leg 0 on d1 PE 0, leg 1 on d0 PE 1.
    std::vector<uint8_t> img[2] = { ReadFile(p0), ReadFile(p1) };
    const std::pair<int, uint64_t> bm[2] = { { 1, 0 }, { 0, 1 } };
    for (auto &e : bm) {
        size_t h = 5 * MiB + e.second * MiB + MiB - 4096;
        EXPECT_EQ(memcmp(img[e.first].data() + h, "VDLVMBM1", 8), 0);
        EXPECT_EQ(Get<uint32_t>(img[e.first], h + 24), 16u); // region shift
        EXPECT_EQ(Get<uint64_t>(img[e.first], h + 40), (MiB - 4096) * 8);
    }
}

} // namespace
