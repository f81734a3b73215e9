// Unit tests for pool/snap.c and the family map of pool/thin.c: snapshots
// of thin volumes (COW, remove in any order, revert, crash at every step,
// pool check), on file-backed pools.  Crashes are simulated by copying the
// device images at a named step (vd_snap_crash_hook) and reopening the pool
// on that copy after the operation finished.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pool/pool_int.h"
#include "pool/snap_int.h"
#include "replica/vdreplica.h"
#include "tests/unit/mirror_fixture.h"

namespace {

const uint64_t CS = 64 << 10; // default chunk size

class Snap : public ::testing::Test {
  protected:
    std::string dir;
    struct vd_conf_pool conf {};
    std::vector<struct vd_conf_dev> devs;
    std::vector<std::string> paths, names, nodes;
    static std::vector<std::string> log_lines;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-snap-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        setenv("VDLVM_RUNDIR", dir.c_str(), 1);
        log_lines.clear();
        vd_log_set_fn(quiet_log);
        devs.assign(2, {});
        for (int i = 0; i < 2; i++) {
            paths.push_back(dir + "/d" + std::to_string(i) + ".img");
            names.push_back("d" + std::to_string(i));
            nodes.push_back("node" + std::to_string(i));
        }
        for (int i = 0; i < 2; i++) {
            devs[i].name = (char *)names[i].c_str();
            devs[i].path = (char *)paths[i].c_str();
            devs[i].size = 64ull << 20;
            devs[i].node = (char *)nodes[i].c_str();
        }
        conf.file = (char *)"test.yaml";
        conf.name = (char *)"sp";
        conf.extent_size = 4ull << 20;
        conf.ndevs = 2;
        conf.devs = devs.data();
    }
    void TearDown() override
    {
        vd_snap_crash_hook = nullptr;
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
        vd_log_set_fn(nullptr);
    }
    static void quiet_log(int level, const char *msg)
    {
        if (level <= VD_LOG_WARN)
            log_lines.push_back(msg);
    }
    vd_pool *CreateOpen()
    {
        EXPECT_EQ(vd_pool_create(&conf, 0), 0);
        return Open();
    }
    vd_pool *Open()
    {
        vd_pool *p = nullptr;
        EXPECT_EQ(vd_pool_open(&conf, &p), 0);
        return p;
    }
    static int MakeThin(vd_pool *p, const char *name, uint64_t size)
    {
        struct vd_vol_opts o;
        vd_vol_opts_init(&o);
        o.thin = 1;
        return vd_vol_create(p, name, size, &o);
    }
    static uint64_t Allocated(vd_pool *p, const char *name)
    {
        struct vd_vol_status st;
        EXPECT_EQ(vd_vol_get_status(p, name, &st), 0);
        return st.allocated;
    }
    // Fill chunk vc of an open volume with byte c (whole chunk).
    static void Fill(vd_vol *v, uint64_t vc, char c)
    {
        std::vector<char> b(CS, c);
        ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), vc * CS, 0), 0);
    }
    // The byte every position of chunk vc of `name` holds, or '?' if mixed.
    static char ChunkOf(vd_pool *p, const std::string &name, uint64_t vc)
    {
        vd_vol *v = vd_vol_open(p, name.c_str());
        EXPECT_NE(v, nullptr);
        if (!v)
            return '!';
        std::vector<char> b(CS);
        EXPECT_EQ(vd_vol_pread(v, b.data(), b.size(), vc * CS), 0);
        vd_vol_close(v);
        for (char x : b)
            if (x != b[0])
                return '?';
        return b[0];
    }
    static int Check(vd_pool *p, struct vd_pool_check *res, int repair = 0)
    {
        return vd_pool_check(p, repair, res);
    }
  public:
    void CopyImages(const std::string &suffix)
    {
        for (auto &f : paths) {
            std::string cmd = "cp --sparse=always '" + f + "' '" + f + suffix + "'";
            ASSERT_EQ(system(cmd.c_str()), 0);
        }
    }
  protected:
    void RestoreImages(const std::string &suffix)
    {
        for (auto &f : paths)
            ASSERT_EQ(rename((f + suffix).c_str(), f.c_str()), 0);
    }
};
std::vector<std::string> Snap::log_lines;

TEST_F(Snap, OverwriteOrigin_SnapshotReadsOld_OriginNew_AfterReopenToo)
{
    vd_pool *p = CreateOpen();
    ASSERT_EQ(MakeThin(p, "v", 1ull << 30), 0);
    vd_vol *v = vd_vol_open(p, "v");
    for (int i = 0; i < 4; i++)
        Fill(v, i, 'A');
    ASSERT_EQ(vd_snap_create(p, "v", "s1"), 0);
    EXPECT_EQ(Allocated(p, "v"), 4 * CS); // metadata only
    // a partial overwrite copies the rest of the shared chunk
    std::vector<char> b(4096, 'B');
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), 1 * CS + 8192, 0), 0);
    Fill(v, 2, 'B');
    vd_vol_close(v);
    EXPECT_EQ(Allocated(p, "v"), 6 * CS); // two chunks copied
    for (int round = 0; round < 2; round++) {
        EXPECT_EQ(ChunkOf(p, "v@s1", 1), 'A');
        EXPECT_EQ(ChunkOf(p, "v@s1", 2), 'A');
        EXPECT_EQ(ChunkOf(p, "v", 2), 'B');
        EXPECT_EQ(ChunkOf(p, "v", 0), 'A');
        EXPECT_EQ(ChunkOf(p, "v@s1", 5), 0);
        vd_vol *h = vd_vol_open(p, "v");
        std::vector<char> r(CS);
        ASSERT_EQ(vd_vol_pread(h, r.data(), r.size(), CS), 0);
        for (size_t i = 0; i < r.size(); i++)
            ASSERT_EQ(r[i], i >= 8192 && i < 12288 ? 'B' : 'A') << i;
        vd_vol_close(h);
        struct vd_pool_check res;
        EXPECT_EQ(Check(p, &res), 0);
        EXPECT_EQ(res.leaked + res.bad, 0u);
        vd_pool_close(p);
        p = Open();
        ASSERT_NE(p, nullptr);
    }
    // a snapshot is read-only
    vd_vol *s = vd_vol_open(p, "v@s1");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(vd_vol_pwrite(s, b.data(), b.size(), 0, 0), -EROFS);
    EXPECT_EQ(vd_vol_size(s), 1ull << 30);
    EXPECT_EQ(vd_snap_remove(p, "v", "s1"), -EBUSY); // open
    EXPECT_EQ(vd_vol_remove(p, "v"), -EBUSY);
    vd_vol_close(s);
    EXPECT_EQ(vd_vol_remove(p, "v"), -EBUSY); // has a snapshot
    EXPECT_EQ(ChunkOf(p, "v", 2), 'B');         // refused: nothing changed
    EXPECT_EQ(vd_snap_create(p, "v", "s1"), -EEXIST);
    EXPECT_EQ(vd_snap_create(p, "v", "bad/name"), -EINVAL);
    EXPECT_EQ(vd_snap_create(p, "nosuch", "s"), -ENOENT);
    ASSERT_EQ(vd_snap_remove(p, "v", "s1"), 0);
    EXPECT_EQ(Allocated(p, "v"), 4 * CS); // the two old copies freed
    ASSERT_EQ(vd_vol_remove(p, "v"), 0);
    vd_pool_close(p);
}

// Three snapshots, each chunk content known; every order of removal frees
// exactly the chunks only the removed snapshot held.
TEST_F(Snap, RemoveInEveryOrder_FreesExactlyWhatOnlyItHeld)
{
    std::vector<int> order = { 0, 1, 2 };
    do {
        vd_pool *p = CreateOpen();
        ASSERT_EQ(MakeThin(p, "v", 256ull << 20), 0);
        vd_vol *v = vd_vol_open(p, "v");
        // model: member -> chunk contents
        std::map<std::string, std::vector<char>> m;
        std::vector<char> head(8, 0);
        const char *sn[3] = { "s0", "s1", "s2" };
        for (int i = 0; i < 4; i++)
            Fill(v, i, head[i] = 'a');
        ASSERT_EQ(vd_snap_create(p, "v", sn[0]), 0);
        m[sn[0]] = head;
        Fill(v, 1, head[1] = 'b');
        Fill(v, 4, head[4] = 'b');
        ASSERT_EQ(vd_snap_create(p, "v", sn[1]), 0);
        m[sn[1]] = head;
        Fill(v, 1, head[1] = 'c');
        Fill(v, 2, head[2] = 'c');
        ASSERT_EQ(vd_snap_create(p, "v", sn[2]), 0);
        m[sn[2]] = head;
        Fill(v, 2, head[2] = 'd');
        Fill(v, 3, head[3] = 'd');
        vd_vol_close(v);
        m["v"] = head;
        // distinct chunks = distinct (vc, content) pairs
        auto expect_alloc = [&]() {
            std::set<std::pair<int, char>> s;
            for (auto &kv : m)
                for (int i = 0; i < 8; i++)
                    if (kv.second[i])
                        s.insert({ i, kv.second[i] });
            return s.size() * CS;
        };
        EXPECT_EQ(Allocated(p, "v"), expect_alloc());
        for (int k : order) {
            // what the list says it holds alone is what its removal frees
            struct vd_snap_info *si;
            size_t n;
            ASSERT_EQ(vd_snap_list(p, "v", &si, &n), 0);
            uint64_t excl = UINT64_MAX;
            for (size_t i = 0; i < n; i++)
                if (!strcmp(si[i].name, sn[k]))
                    excl = si[i].exclusive;
            free(si);
            uint64_t before = Allocated(p, "v");
            ASSERT_EQ(vd_snap_remove(p, "v", sn[k]), 0);
            m.erase(sn[k]);
            EXPECT_EQ(Allocated(p, "v"), expect_alloc()) << "removed " << k;
            EXPECT_EQ(before - Allocated(p, "v"), excl);
            for (auto &kv : m)
                for (int i = 0; i < 8; i++)
                    ASSERT_EQ(ChunkOf(p, kv.first == "v" ? "v" : "v@" + kv.first, i),
                              kv.second[i])
                        << kv.first << " chunk " << i;
            struct vd_pool_check res;
            EXPECT_EQ(Check(p, &res), 0);
            vd_pool_close(p);
            p = Open();
            EXPECT_EQ(Allocated(p, "v"), expect_alloc());
            EXPECT_EQ(Check(p, &res), 0);
        }
        vd_pool_close(p);
        std::string cmd = "rm -f " + paths[0] + " " + paths[1];
        ASSERT_EQ(system(cmd.c_str()), 0);
    } while (std::next_permutation(order.begin(), order.end()));
}

TEST_F(Snap, Revert_VolumeBecomesSnapshot_ItsOwnChunksFreed_Durable)
{
    vd_pool *p = CreateOpen();
    ASSERT_EQ(MakeThin(p, "v", 256ull << 20), 0);
    vd_vol *v = vd_vol_open(p, "v");
    Fill(v, 0, 'A');
    Fill(v, 1, 'A');
    ASSERT_EQ(vd_snap_create(p, "v", "s"), 0);
    Fill(v, 0, 'B');
    Fill(v, 5, 'B');
    EXPECT_EQ(Allocated(p, "v"), 4 * CS);
    EXPECT_EQ(vd_vol_revert(p, "v", "s", 0), -EBUSY); // open: refused
    EXPECT_EQ(ChunkOf(p, "v", 0), 'B');
    vd_vol_close(v);
    ASSERT_EQ(vd_vol_revert(p, "v", "s", 0), 0);
    EXPECT_EQ(Allocated(p, "v"), 2 * CS); // B's freed
    EXPECT_EQ(ChunkOf(p, "v", 0), 'A');
    EXPECT_EQ(ChunkOf(p, "v", 5), 0);
    v = vd_vol_open(p, "v");
    Fill(v, 1, 'C'); // COW again: the snapshot still shares it
    vd_vol_close(v);
    vd_pool_close(p);
    p = Open();
    EXPECT_EQ(ChunkOf(p, "v", 0), 'A');
    EXPECT_EQ(ChunkOf(p, "v", 1), 'C');
    EXPECT_EQ(ChunkOf(p, "v", 5), 0);
    EXPECT_EQ(ChunkOf(p, "v@s", 1), 'A');
    EXPECT_EQ(Allocated(p, "v"), 3 * CS);
    struct vd_pool_check res;
    EXPECT_EQ(Check(p, &res), 0);
    // --force while open
    v = vd_vol_open(p, "v");
    EXPECT_EQ(vd_vol_revert(p, "v", "s", 1), 0);
    std::vector<char> r(CS);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), CS), 0);
    EXPECT_EQ(r[0], 'A');
    vd_vol_close(v);
    vd_pool_close(p);
}

// A crash at each step of copy-on-write, snapshot create, remove and
// revert: after the reopen no acknowledged write is lost, the operation
// happened or did not, references verify, and leaks found at open are
// reclaimed (pool check --repair, then clean).
TEST_F(Snap, CrashAtEveryStep_ConsistentAfterReopen)
{
    static Snap *self;
    static std::string want;
    static bool hit;
    self = this;
    const char *steps[] = { "cow-data-written",     "commit-data-flushed",
                            "commit-map-written",   "create-before-record",
                            "create-after-record",  "remove-after-record",
                            "revert-after-record" };
    for (const char *step : steps) {
        SCOPED_TRACE(step);
        vd_pool *p = CreateOpen();
        ASSERT_EQ(MakeThin(p, "v", 256ull << 20), 0);
        vd_vol *v = vd_vol_open(p, "v");
        Fill(v, 0, 'A');
        Fill(v, 1, 'A');
        ASSERT_EQ(vd_snap_create(p, "v", "s0"), 0);
        Fill(v, 1, 'X'); // head: X, s0: A (shared chunk 0)
        vd_vol_close(v);
        want = step;
        hit = false;
        vd_snap_crash_hook = [](const char *s) {
            if (!hit && want == s) {
                hit = true;
                self->CopyImages(".crash");
            }
        };
        std::string op;
        v = vd_vol_open(p, "v");
        if (!strncmp(step, "cow", 3) || !strncmp(step, "commit", 6)) {
            op = "cow";
            Fill(v, 0, 'B'); // copy-on-write of the shared chunk
        }
        vd_vol_close(v);
        if (!strncmp(step, "create", 6)) {
            op = "create";
            ASSERT_EQ(vd_snap_create(p, "v", "s1"), 0);
        } else if (!strncmp(step, "remove", 6)) {
            op = "remove";
            ASSERT_EQ(vd_snap_remove(p, "v", "s0"), 0);
        } else if (!strncmp(step, "revert", 6)) {
            op = "revert";
            ASSERT_EQ(vd_vol_revert(p, "v", "s0", 0), 0);
        }
        vd_snap_crash_hook = nullptr;
        ASSERT_TRUE(hit);
        vd_pool_close(p);
        RestoreImages(".crash");
        p = Open();
        ASSERT_NE(p, nullptr);
        struct vd_pool_check res;
        // crash recovery reclaimed what no member references: clean
        EXPECT_EQ(Check(p, &res, 1), 0);
        EXPECT_EQ(res.bad + res.leaked, 0u);
        if (op == "remove" || op == "revert") {
            EXPECT_EQ(res.reclaimed, 1u); // A's old chunk, X
        }
        struct vd_snap_info *si;
        size_t n;
        ASSERT_EQ(vd_snap_list(p, "v", &si, &n), 0);
        std::set<std::string> snaps;
        for (size_t i = 0; i < n; i++)
            snaps.insert(si[i].name);
        free(si);
        if (op == "cow") {
            // not acknowledged when the crash hit: old or new, never mixed
            char c0 = ChunkOf(p, "v", 0);
            EXPECT_TRUE(c0 == 'A' || c0 == 'B') << c0;
            EXPECT_EQ(ChunkOf(p, "v@s0", 0), 'A');
            EXPECT_EQ(ChunkOf(p, "v", 1), 'X');
        } else if (op == "create") {
            EXPECT_EQ(snaps.count("s1"), !strcmp(step, "create-after-record"));
            if (snaps.count("s1")) {
                EXPECT_EQ(ChunkOf(p, "v@s1", 1), 'X');
            }
            EXPECT_EQ(ChunkOf(p, "v", 1), 'X');
        } else if (op == "remove") {
            EXPECT_EQ(snaps.count("s0"), 0u); // the record was durable
            EXPECT_EQ(ChunkOf(p, "v", 0), 'A');
            EXPECT_EQ(ChunkOf(p, "v", 1), 'X');
            EXPECT_EQ(Allocated(p, "v"), 2 * CS); // the leaked A reclaimed
        } else if (op == "revert") {
            EXPECT_EQ(ChunkOf(p, "v", 1), 'A');
            EXPECT_EQ(Allocated(p, "v"), 2 * CS); // X reclaimed
        }
        if (snaps.count("s0")) {
            EXPECT_EQ(ChunkOf(p, "v@s0", 1), 'A');
        }
        vd_pool_close(p);
        p = Open();
        EXPECT_EQ(Check(p, &res), 0) << "leaked " << res.leaked;
        EXPECT_EQ(res.leaked + res.bad, 0u);
        vd_pool_close(p);
        std::string cmd = "rm -f " + paths[0] + " " + paths[1];
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
}

// Random sequences of write, discard, snapshot create / remove, revert and
// reopen against a model; pool check's code verifies the references after
// every step.
TEST_F(Snap, RandomSequences_MatchModel_CheckClean)
{
    for (unsigned seed = 1; seed <= 6; seed++) {
        SCOPED_TRACE(seed);
        std::mt19937 rng(seed);
        vd_pool *p = CreateOpen();
        const int NV = 12;
        ASSERT_EQ(MakeThin(p, "v", NV * CS), 0);
        std::map<std::string, std::vector<char>> m;
        m["v"] = std::vector<char>(NV, 0);
        int next = 0;
        for (int step = 0; step < 60; step++) {
            int op = rng() % 10;
            std::vector<std::string> sn;
            for (auto &kv : m)
                if (kv.first != "v")
                    sn.push_back(kv.first);
            if (op < 5) {
                int vc = rng() % NV;
                char c = 'a' + rng() % 26;
                vd_vol *v = vd_vol_open(p, "v");
                Fill(v, vc, c);
                vd_vol_close(v);
                m["v"][vc] = c;
            } else if (op == 5) {
                int vc = rng() % NV;
                vd_vol *v = vd_vol_open(p, "v");
                ASSERT_EQ(vd_vol_discard(v, vc * CS, CS), 0);
                vd_vol_close(v);
                m["v"][vc] = 0;
            } else if (op == 6) {
                std::string s = "s" + std::to_string(next++);
                ASSERT_EQ(vd_snap_create(p, "v", s.c_str()), 0);
                m[s] = m["v"];
            } else if (op == 7 && !sn.empty()) {
                std::string s = sn[rng() % sn.size()];
                ASSERT_EQ(vd_snap_remove(p, "v", s.c_str()), 0);
                m.erase(s);
            } else if (op == 8 && !sn.empty()) {
                std::string s = sn[rng() % sn.size()];
                ASSERT_EQ(vd_vol_revert(p, "v", s.c_str(), 0), 0);
                m["v"] = m[s];
            } else if (op == 9) {
                vd_pool_close(p);
                p = Open();
                ASSERT_NE(p, nullptr);
            }
            struct vd_pool_check res;
            ASSERT_EQ(Check(p, &res), 0) << "step " << step;
            for (auto &kv : m)
                for (int i = 0; i < NV; i++)
                    ASSERT_EQ(ChunkOf(p, kv.first == "v" ? "v" : "v@" + kv.first, i),
                              kv.second[i])
                        << "step " << step << " " << kv.first << " chunk " << i;
        }
        vd_pool_close(p);
        std::string cmd = "rm -f " + paths[0] + " " + paths[1];
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
}

// Snapshots of a mirrored thin volume: the copies stay mirrored (both legs
// hold the snapshot's and the volume's chunks), reopen included.
TEST_F(Snap, MirroredThin_SnapshotAndCow_BothLegs)
{
    vd_pool *p = CreateOpen();
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.thin = 1;
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    o.allow_same_node = 1;
    ASSERT_EQ(vd_vol_create(p, "m", 256ull << 20, &o), 0);
    vd_vol *v = vd_vol_open(p, "m");
    Fill(v, 0, 'A');
    ASSERT_EQ(vd_snap_create(p, "m", "s"), 0);
    Fill(v, 0, 'B');
    vd_vol_close(v);
    EXPECT_EQ(ChunkOf(p, "m@s", 0), 'A');
    EXPECT_EQ(ChunkOf(p, "m", 0), 'B');
    // both legs hold both chunks: compare the legs' data spaces
    struct vd_vol *vv = vd_vol_find(p, "m");
    std::vector<char> l0(4 << 20), l1(4 << 20);
    uint64_t o0, o1;
    struct vd_dev *d0 = vd_leg_locate(vv, 0, 0, &o0);
    struct vd_dev *d1 = vd_leg_locate(vv, 1, 0, &o1);
    ASSERT_NE(d0, nullptr);
    ASSERT_NE(d1, nullptr);
    ASSERT_NE(d0, d1);
    ASSERT_EQ(vd_dev_pread(d0, l0.data(), l0.size(), o0), 0);
    ASSERT_EQ(vd_dev_pread(d1, l1.data(), l1.size(), o1), 0);
    EXPECT_TRUE(l0 == l1);
    EXPECT_NE(std::count(l0.begin(), l0.end(), 'A'), 0);
    EXPECT_NE(std::count(l0.begin(), l0.end(), 'B'), 0);
    vd_pool_close(p);
    p = Open();
    EXPECT_EQ(ChunkOf(p, "m@s", 0), 'A');
    EXPECT_EQ(ChunkOf(p, "m", 0), 'B');
    struct vd_pool_check res;
    EXPECT_EQ(Check(p, &res), 0);
    vd_pool_close(p);
}

// Snapshots while 4 threads overwrite their own chunk with growing
// sequence numbers: each snapshot holds, per chunk, a number at least the
// last one acknowledged before the create started and at most one more
// than the last acknowledged when it returned.
struct Writer {
    vd_vol *v;
    uint64_t vc;
    std::atomic<uint32_t> acked{ 0 };
    int err = 0;
};
static void *writer_main(void *arg)
{
    Writer *w = (Writer *)arg;
    std::vector<uint32_t> b(CS / 4);
    for (uint32_t k = 1; k <= 300 && !w->err; k++) {
        std::fill(b.begin(), b.end(), k);
        w->err = vd_vol_pwrite(w->v, b.data(), CS, w->vc * CS, 0);
        if (!w->err)
            w->acked.store(k);
    }
    return nullptr;
}

TEST_F(Snap, UnderConcurrentWrites_HoldsEveryAcknowledgedWrite)
{
    vd_pool *p = CreateOpen();
    ASSERT_EQ(MakeThin(p, "v", 256ull << 20), 0);
    vd_vol *v = vd_vol_open(p, "v");
    Writer w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i].v = v;
        w[i].vc = i * 3;
        ASSERT_EQ(pthread_create(&th[i], nullptr, writer_main, &w[i]), 0);
    }
    std::vector<std::vector<uint32_t>> lo, hi;
    for (int s = 0; s < 6; s++) {
        usleep(20000);
        std::vector<uint32_t> a0(4), a1(4);
        for (int i = 0; i < 4; i++)
            a0[i] = w[i].acked.load();
        ASSERT_EQ(vd_snap_create(p, "v", ("s" + std::to_string(s)).c_str()), 0);
        for (int i = 0; i < 4; i++)
            a1[i] = w[i].acked.load();
        lo.push_back(a0);
        hi.push_back(a1);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], nullptr);
        EXPECT_EQ(w[i].err, 0);
    }
    vd_vol_close(v);
    for (int round = 0; round < 2; round++) {
        for (int s = 0; s < 6; s++) {
            vd_vol *sv = vd_vol_open(p, ("v@s" + std::to_string(s)).c_str());
            ASSERT_NE(sv, nullptr);
            for (int i = 0; i < 4; i++) {
                std::vector<uint32_t> b(CS / 4);
                ASSERT_EQ(vd_vol_pread(sv, b.data(), CS, w[i].vc * CS), 0);
                for (uint32_t x : b)
                    ASSERT_EQ(x, b[0]); // never torn
                EXPECT_GE(b[0], lo[s][i]) << "snapshot " << s << " writer " << i;
                EXPECT_LE(b[0], hi[s][i] + 1) << "snapshot " << s << " writer " << i;
            }
            vd_vol_close(sv);
        }
        struct vd_pool_check res;
        EXPECT_EQ(Check(p, &res), 0);
        vd_pool_close(p);
        p = Open();
    }
    vd_pool_close(p);
}

static double ReadSeconds(vd_pool *p, const char *name, int rounds)
{
    vd_vol *v = vd_vol_open(p, name);
    EXPECT_NE(v, nullptr);
    std::vector<char> b(4096);
    struct timespec a, z;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int r = 0; r < rounds; r++)
        for (uint64_t off = 0; off < 64 * CS; off += 4096)
            EXPECT_EQ(vd_vol_pread(v, b.data(), b.size(), off), 0);
    clock_gettime(CLOCK_MONOTONIC, &z);
    vd_vol_close(v);
    return (z.tv_sec - a.tv_sec) + (z.tv_nsec - a.tv_nsec) / 1e9;
}

// 100 snapshots, each after overwriting some chunks: the oldest (deepest
// in a backing chain) reads as fast as the volume: one lookup in its own
// map.  Create time is measured too (metadata only).
TEST_F(Snap, HundredSnapshots_DeepestReadsAsFastAsOrigin)
{
    vd_pool *p = CreateOpen();
    ASSERT_EQ(MakeThin(p, "v", 1ull << 30), 0);
    vd_vol *v = vd_vol_open(p, "v");
    for (int i = 0; i < 64; i++)
        Fill(v, i, 'o');
    double tmax = 0;
    for (int s = 0; s < 100; s++) {
        struct timespec a, z;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ASSERT_EQ(vd_snap_create(p, "v", ("s" + std::to_string(s)).c_str()), 0);
        clock_gettime(CLOCK_MONOTONIC, &z);
        double t = (z.tv_sec - a.tv_sec) + (z.tv_nsec - a.tv_nsec) / 1e9;
        tmax = std::max(tmax, t);
        std::vector<char> b(4096, 'a' + s % 26);
        ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), (s % 64) * CS, 0), 0);
    }
    vd_vol_close(v);
    EXPECT_EQ(ChunkOf(p, "v@s0", 10), 'o');
    EXPECT_EQ(ChunkOf(p, "v@s30", 40), 'o');
    EXPECT_EQ(ChunkOf(p, "v@s99", 98 % 64), '?'); // partially overwritten
    // warm the page cache, then best of 3
    ReadSeconds(p, "v", 1);
    ReadSeconds(p, "v@s0", 1);
    double h = 1e9, d = 1e9;
    for (int i = 0; i < 3; i++) {
        h = std::min(h, ReadSeconds(p, "v", 50));
        d = std::min(d, ReadSeconds(p, "v@s0", 50));
    }
    printf("snap: 100 snapshots: read of the oldest %.3f s, of the volume "
           "%.3f s (ratio %.2f); slowest create %.2f ms\n",
           d, h, d / h, tmax * 1e3);
    EXPECT_LE(d, h * 1.5 + 0.01);
    struct vd_pool_check res;
    EXPECT_EQ(Check(p, &res), 0);
    vd_pool_close(p);
    p = Open(); // 100 members rebuilt
    EXPECT_EQ(ChunkOf(p, "v@s0", 10), 'o');
    EXPECT_EQ(Check(p, &res), 0);
    vd_pool_close(p);
}

// Snapshot create time for N allocated chunks (256, or VDLVM_SNAP_MIB MiB
// of them), 1 GiB and 1 TiB provisioned.
TEST_F(Snap, CreateTime_IndependentOfProvisionedSize)
{
    const char *e = getenv("VDLVM_SNAP_MIB");
    int mib = e ? atoi(e) : 16;
    if (mib > 16)
        for (auto &d : devs)
            d.size = (uint64_t)(mib + 64) << 20;
    vd_pool *p = CreateOpen();
    double t[2];
    const char *nm[2] = { "small", "big" };
    uint64_t sz[2] = { 1ull << 30, 1ull << 40 };
    for (int k = 0; k < 2; k++) {
        ASSERT_EQ(MakeThin(p, nm[k], sz[k]), 0);
        vd_vol *v = vd_vol_open(p, nm[k]);
        std::vector<char> b(1 << 20, 'z');
        for (int i = 0; i < mib; i++) // 16 chunks per MiB
            ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), i * (1ull << 20), 0), 0);
        vd_vol_close(v);
        struct timespec a, z;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ASSERT_EQ(vd_snap_create(p, nm[k], "s"), 0);
        clock_gettime(CLOCK_MONOTONIC, &z);
        t[k] = (z.tv_sec - a.tv_sec) + (z.tv_nsec - a.tv_nsec) / 1e9;
    }
    printf("snap: create with %d chunks allocated: 1 GiB volume %.2f ms, "
           "1 TiB volume %.2f ms\n",
           mib * 16, t[0] * 1e3, t[1] * 1e3);
    EXPECT_LT(t[1], 0.5);
    EXPECT_EQ(ChunkOf(p, "big@s", 3), 'z');
    vd_pool_close(p);
}

} // namespace

namespace {
// Clones (vd_vol_clone): writable members sharing the source's chunks.
TEST_F(Snap, Clone_SharesUntilWritten_CloneOfClone_RemoveAnyOrder)
{
    vd_pool *p = CreateOpen();
    ASSERT_EQ(MakeThin(p, "gold", 64ull << 20), 0);
    vd_vol *v = vd_vol_open(p, "gold");
    for (uint64_t vc = 0; vc < 8; vc++)
        Fill(v, vc, 'G');
    vd_vol_close(v);
    ASSERT_EQ(vd_snap_create(p, "gold", "base"), 0);
    ASSERT_EQ(vd_vol_clone(p, "gold@base", "c1"), 0);
    ASSERT_EQ(vd_vol_clone(p, "gold@base", "c2"), 0);
    EXPECT_EQ(vd_vol_clone(p, "gold@base", "c1"), -EEXIST);
    EXPECT_EQ(vd_vol_clone(p, "gold@nope", "c9"), -ENOENT);
    EXPECT_EQ(MakeThin(p, "c1", 1 << 20), -EEXIST);
    uint64_t before = Allocated(p, "gold");
    EXPECT_EQ(before, 8 * CS); // clones take no data space until written
    struct vd_clone_info ci;
    ASSERT_EQ(vd_clone_get_info(p, "c1", &ci), 0);
    EXPECT_STREQ(ci.origin, "gold@base");
    EXPECT_EQ(ci.shared, 8 * CS);
    EXPECT_EQ(ci.exclusive, 0u);

    v = vd_vol_open(p, "c1");
    ASSERT_NE(v, nullptr);
    Fill(v, 1, '1');
    // partial write: the rest of the chunk comes from the shared one
    ASSERT_EQ(vd_vol_pwrite(v, "xy", 2, 2 * CS + 10, 0), 0);
    Fill(v, 1, 'a'); // in place now: its own chunk
    vd_vol_close(v);
    v = vd_vol_open(p, "c2");
    Fill(v, 1, '2');
    vd_vol_close(v);
    EXPECT_EQ(ChunkOf(p, "c1", 1), 'a');
    EXPECT_EQ(ChunkOf(p, "c2", 1), '2');
    EXPECT_EQ(ChunkOf(p, "gold", 1), 'G');
    EXPECT_EQ(ChunkOf(p, "gold@base", 1), 'G');
    EXPECT_EQ(ChunkOf(p, "c1", 0), 'G');
    EXPECT_EQ(ChunkOf(p, "c1", 2), '?');
    EXPECT_EQ(Allocated(p, "gold"), before + 3 * CS);
    ASSERT_EQ(vd_clone_get_info(p, "c1", &ci), 0);
    EXPECT_EQ(ci.exclusive, 2 * CS);
    EXPECT_EQ(ci.shared, 6 * CS);

    // clone of a clone; then the clone it came from writes on
    ASSERT_EQ(vd_vol_clone(p, "c1", "c3"), 0);
    ASSERT_EQ(vd_clone_get_info(p, "c3", &ci), 0);
    EXPECT_STREQ(ci.origin, "c1");
    v = vd_vol_open(p, "c1");
    Fill(v, 1, 'b'); // shared with c3 now: copied
    vd_vol_close(v);
    EXPECT_EQ(ChunkOf(p, "c3", 1), 'a');
    EXPECT_EQ(ChunkOf(p, "c1", 1), 'b');
    // clone of the volume itself: the volume moves on, the clone keeps
    ASSERT_EQ(vd_vol_clone(p, "gold", "c4"), 0);
    v = vd_vol_open(p, "gold");
    Fill(v, 0, 'H');
    vd_vol_close(v);
    EXPECT_EQ(ChunkOf(p, "c4", 0), 'G');
    EXPECT_EQ(ChunkOf(p, "gold", 0), 'H');

    struct vd_pool_check res;
    EXPECT_EQ(Check(p, &res), 0);
    EXPECT_EQ(res.leaked + res.bad, 0u);
    EXPECT_EQ(vd_vol_remove(p, "gold"), -EBUSY); // holds the clones' chunks
    struct vd_clone_info *cl;
    size_t n;
    ASSERT_EQ(vd_clone_list(p, &cl, &n), 0);
    EXPECT_EQ(n, 4u);
    free(cl);

    // the same after a reopen (checkpoint and replay)
    vd_pool_close(p);
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(ChunkOf(p, "c1", 1), 'b');
    EXPECT_EQ(ChunkOf(p, "c2", 1), '2');
    EXPECT_EQ(ChunkOf(p, "c3", 1), 'a');
    EXPECT_EQ(ChunkOf(p, "c4", 0), 'G');
    EXPECT_EQ(ChunkOf(p, "c1", 3), 'G');
    EXPECT_EQ(ChunkOf(p, "gold@base", 1), 'G');
    EXPECT_EQ(Check(p, &res), 0);
    EXPECT_EQ(res.leaked + res.bad + res.reclaimed, 0u);

    // remove the snapshot first: the clones keep its chunks
    ASSERT_EQ(vd_snap_remove(p, "gold", "base"), 0);
    EXPECT_EQ(ChunkOf(p, "c2", 5), 'G');
    for (const char *c : { "c1", "c4", "c3", "c2" }) {
        ASSERT_EQ(vd_vol_remove(p, c), 0) << c;
        EXPECT_EQ(Check(p, &res), 0);
        EXPECT_EQ(res.leaked + res.bad, 0u);
    }
    EXPECT_EQ(Allocated(p, "gold"), 8 * CS); // only the volume's own left
    EXPECT_EQ(vd_vol_remove(p, "gold"), 0);
    vd_pool_close(p);
}

TEST_F(Snap, Clone_CrashAtEveryStep_NoCloneOrAWholeOne)
{
    static Snap *self;
    static std::string want;
    static bool hit;
    self = this;
    const char *steps[] = { "clone-before-record", "clone-after-record",
                            "clone-data-written", "commit-data-flushed",
                            "commit-map-written", "clone-remove-after-record" };
    for (const char *step : steps) {
        SCOPED_TRACE(step);
        vd_pool *p = CreateOpen();
        ASSERT_EQ(MakeThin(p, "v", 64ull << 20), 0);
        vd_vol *v = vd_vol_open(p, "v");
        Fill(v, 0, 'A');
        Fill(v, 1, 'A');
        vd_vol_close(v);
        ASSERT_EQ(vd_snap_create(p, "v", "s"), 0);
        std::string s = step;
        bool pre = s == "clone-before-record" || s == "clone-after-record";
        if (!pre) {
            ASSERT_EQ(vd_vol_clone(p, "v@s", "c"), 0);
        }
        want = step;
        hit = false;
        vd_snap_crash_hook = [](const char *st) {
            if (!hit && want == st) {
                hit = true;
                self->CopyImages(".crash");
            }
        };
        if (pre) {
            ASSERT_EQ(vd_vol_clone(p, "v@s", "c"), 0);
        } else if (s == "clone-remove-after-record") {
            ASSERT_EQ(vd_vol_remove(p, "c"), 0);
        } else {
            v = vd_vol_open(p, "c");
            Fill(v, 0, 'B');
            vd_vol_close(v);
        }
        vd_snap_crash_hook = nullptr;
        ASSERT_TRUE(hit);
        vd_pool_close(p);
        RestoreImages(".crash");
        p = Open();
        ASSERT_NE(p, nullptr);
        struct vd_pool_check res;
        EXPECT_EQ(Check(p, &res, 1), 0);
        EXPECT_EQ(res.bad + res.leaked, 0u);
        struct vd_clone_info ci;
        bool exists = vd_clone_get_info(p, "c", &ci) == 0;
        if (s == "clone-before-record" || s == "clone-remove-after-record") {
            EXPECT_FALSE(exists);
        } else {
            ASSERT_TRUE(exists);
            char c0 = ChunkOf(p, "c", 0);
            EXPECT_TRUE(c0 == 'A' || c0 == 'B') << c0;
            EXPECT_EQ(ChunkOf(p, "c", 1), 'A');
        }
        EXPECT_EQ(ChunkOf(p, "v", 0), 'A');
        EXPECT_EQ(ChunkOf(p, "v@s", 0), 'A');
        vd_pool_close(p);
        p = Open();
        EXPECT_EQ(Check(p, &res), 0);
        EXPECT_EQ(res.leaked + res.bad, 0u);
        vd_pool_close(p);
        std::string cmd = "rm -f " + paths[0] + " " + paths[1];
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
}

// Reference counting through clone, snapshot, write, UNMAP, revert,
// remove and reopen in random orders, against a model that names every
// chunk and the generation it was written in: each member (the volume
// "v", its snapshots "v@sN", clones "cN") maps its chunks to chunk ids
// and writes in a generation (the volume moves to a new one at a snapshot,
// a clone of it or a revert; a clone at a clone of it).  A write copies a
// chunk another member also names (a clone also one of another
// generation), else writes in place.  UNMAP: the volume without snapshots
// or clones frees; a clone frees its own chunk when no member names a
// chunk of an ancestor generation for it; otherwise zeroes are written
// (as a write).  After every step: every member reads its model, pool
// check is clean, and the family's allocated bytes equal the chunks some
// member names (a chunk is freed exactly when its last reference goes).
// At the end everything is removed in a random order and the pool's free
// bytes are back.
TEST_F(Snap, Clone_RandomSequences_SpaceComesBackExactly)
{
    for (unsigned seed = 1; seed <= 6; seed++) {
        SCOPED_TRACE(seed);
        std::mt19937 rng(seed);
        vd_pool *p = CreateOpen();
        ASSERT_NE(p, nullptr);
        struct vd_pool_info pi0;
        ASSERT_EQ(vd_pool_get_info(p, &pi0), 0);
        const int NV = 10;
        ASSERT_EQ(MakeThin(p, "v", NV * CS), 0);
        std::map<std::string, std::vector<int>> m; // member -> chunk ids
        std::map<int, char> data;                  // chunk id -> byte
        std::map<int, int> cgen;                   // chunk id -> generation
        std::map<int, int> parent;                 // generation -> parent
        std::map<std::string, int> gen;            // member -> generation
        int nextid = 1, nextgen = 2, nsnap = 0, nclone = 0, unmaps = 0, freed = 0;
        m["v"] = std::vector<int>(NV, 0);
        gen["v"] = 1;
        parent[1] = 0;
        auto newgen = [&](int par) {
            parent[nextgen] = par;
            return nextgen++;
        };
        auto refs = [&](int id) {
            int n = 0;
            for (auto &kv : m)
                n += std::count(kv.second.begin(), kv.second.end(), id) > 0;
            return n;
        };
        auto live = [&]() {
            std::set<int> ids;
            for (auto &kv : m)
                for (int id : kv.second)
                    if (id)
                        ids.insert(id);
            return ids.size();
        };
        auto members = [&](bool snaps, bool clones) {
            std::vector<std::string> r;
            for (auto &kv : m) {
                bool isnap = kv.first.rfind("v@", 0) == 0;
                bool isclone = kv.first[0] == 'c';
                if ((snaps && isnap) || (clones && isclone))
                    r.push_back(kv.first);
            }
            return r;
        };
        // the model's side of a write of c to chunk vc of who
        auto mwrite = [&](const std::string &who, int vc, char c) {
            int &id = m[who][vc];
            bool own = id && refs(id) == 1 && (who == "v" || cgen[id] == gen[who]);
            if (!own) {
                id = nextid++;
                cgen[id] = gen[who];
            }
            data[id] = c;
        };
        auto write = [&](const std::string &who, int vc, char c) {
            vd_vol *v = vd_vol_open(p, who.c_str());
            ASSERT_NE(v, nullptr) << who;
            Fill(v, vc, c);
            vd_vol_close(v);
            mwrite(who, vc, c);
        };
        auto above = [&](int g, int anc) { // anc a strict ancestor of g
            for (int x = parent[g]; x; x = parent[x])
                if (x == anc)
                    return true;
            return false;
        };
        auto unmap = [&](const std::string &who, int vc) {
            vd_vol *v = vd_vol_open(p, who.c_str());
            ASSERT_NE(v, nullptr) << who;
            ASSERT_EQ(vd_vol_discard(v, vc * CS, CS), 0);
            vd_vol_close(v);
            unmaps++;
            int &id = m[who][vc];
            if (!id)
                return;
            if (who == "v") {
                if (m.size() == 1)
                    id = 0, freed++;
                else
                    mwrite(who, vc, 0);
                return;
            }
            bool own = refs(id) == 1 && cgen[id] == gen[who], beneath = false;
            for (auto &kv : m)
                if (kv.first != who && kv.second[vc] && above(gen[who], cgen[kv.second[vc]]))
                    beneath = true;
            if (own && !beneath)
                id = 0, freed++;
            else
                mwrite(who, vc, 0);
        };
        auto verify = [&](int step) {
            struct vd_pool_check res;
            ASSERT_EQ(Check(p, &res), 0) << "step " << step;
            ASSERT_EQ(res.leaked + res.bad, 0u) << "step " << step;
            for (auto &kv : m)
                for (int i = 0; i < NV; i++)
                    ASSERT_EQ(ChunkOf(p, kv.first, i), kv.second[i] ? data[kv.second[i]] : 0)
                        << "step " << step << " " << kv.first << " chunk " << i;
            ASSERT_EQ(Allocated(p, "v"), live() * CS) << "step " << step;
        };
        for (int step = 0; step < 80; step++) {
            int op = rng() % 14;
            auto sn = members(true, false), cl = members(false, true);
            if (op < 3) {
                write("v", rng() % NV, 'a' + rng() % 26);
            } else if (op < 6 && !cl.empty()) {
                write(cl[rng() % cl.size()], rng() % NV, 'A' + rng() % 26);
            } else if (op == 6) {
                std::string s = "s" + std::to_string(nsnap++);
                ASSERT_EQ(vd_snap_create(p, "v", s.c_str()), 0);
                m["v@" + s] = m["v"];
                gen["v@" + s] = gen["v"];
                gen["v"] = newgen(gen["v"]);
            } else if (op == 7) {
                // a clone of the volume, a snapshot or a clone
                auto all = members(true, true);
                all.push_back("v");
                std::string src = all[rng() % all.size()];
                std::string c = "c" + std::to_string(nclone++);
                ASSERT_EQ(vd_vol_clone(p, src.c_str(), c.c_str()), 0) << src;
                m[c] = m[src];
                int g = gen[src];
                gen[c] = newgen(g);
                if (src == "v" || src[0] == 'c')
                    gen[src] = newgen(g); // a writable source moves on
            } else if (op == 8 && !sn.empty()) {
                std::string s = sn[rng() % sn.size()];
                ASSERT_EQ(vd_snap_remove(p, "v", s.substr(2).c_str()), 0);
                m.erase(s);
            } else if (op == 9 && !cl.empty()) {
                std::string c = cl[rng() % cl.size()];
                ASSERT_EQ(vd_vol_remove(p, c.c_str()), 0) << c;
                m.erase(c);
            } else if (op == 10 && !sn.empty()) {
                std::string s = sn[rng() % sn.size()];
                ASSERT_EQ(vd_vol_revert(p, "v", s.substr(2).c_str(), 0), 0);
                m["v"] = m[s];
                gen["v"] = newgen(gen[s]);
            } else if (op == 11) {
                vd_pool_close(p);
                p = Open();
                ASSERT_NE(p, nullptr);
            } else if (op == 12 && !cl.empty()) {
                unmap(cl[rng() % cl.size()], rng() % NV);
            } else if (op == 13) {
                unmap("v", rng() % NV);
            }
            verify(step);
        }
        EXPECT_GT(unmaps, 0);
        // remove every snapshot and clone in a random order, the volume last
        auto rest = members(true, true);
        std::shuffle(rest.begin(), rest.end(), rng);
        if (!members(false, true).empty()) {
            EXPECT_EQ(vd_vol_remove(p, "v"), -EBUSY); // holds the clones' chunks
        }
        for (auto &who : rest) {
            if (who[0] == 'c')
                ASSERT_EQ(vd_vol_remove(p, who.c_str()), 0) << who;
            else
                ASSERT_EQ(vd_snap_remove(p, "v", who.substr(2).c_str()), 0) << who;
            m.erase(who);
            verify(1000);
        }
        ASSERT_EQ(vd_vol_remove(p, "v"), 0);
        struct vd_pool_info pi;
        ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
        EXPECT_EQ(pi.free_bytes, pi0.free_bytes);
        EXPECT_EQ(pi.allocated_bytes, pi0.allocated_bytes);
        vd_pool_close(p);
        std::string cmd = "rm -f " + paths[0] + " " + paths[1];
        ASSERT_EQ(system(cmd.c_str()), 0);
        std::printf("seed %u: %d unmaps, %d freed\n", seed, unmaps, freed);
    }
}

// Clones of a mirrored thin volume: their copies are mirrored too.  With
// one leg's device failing mid-way, the clone's copy-on-write and in-place
// writes still succeed on the other leg, every member reads back its data,
// also after a reopen (the failed leg stays out), and pool check is clean.
TEST_F(Snap, MirroredThin_Clone_LegFails_DataReadsBack)
{
    vd_pool *p = CreateOpen();
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.thin = 1;
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    o.allow_same_node = 1;
    ASSERT_EQ(vd_vol_create(p, "m", 64ull << 20, &o), 0);
    vd_vol *v = vd_vol_open(p, "m");
    for (uint64_t vc = 0; vc < 4; vc++)
        Fill(v, vc, 'G');
    vd_vol_close(v);
    ASSERT_EQ(vd_snap_create(p, "m", "base"), 0);
    ASSERT_EQ(vd_vol_clone(p, "m@base", "c1"), 0);
    v = vd_vol_open(p, "c1");
    ASSERT_NE(v, nullptr);
    Fill(v, 1, 'C'); // a copy, on both legs
    vd_vol_close(v);
    struct vd_mirror_info mi;
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    ASSERT_EQ(mi.legs[1].state, VD_LEG_INSYNC);
    // leg 1's device fails (its metadata area still works)
    uint32_t dev = UINT32_MAX;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (!strcmp(p->devs[i].name, mi.legs[1].device))
            dev = i;
    ASSERT_NE(dev, UINT32_MAX);
    vdtest_mirror::FaultBdev *f = vdtest_mirror::Wrap(p, dev);
    f->spare_md = 1;
    __atomic_store_n(&f->broken, 1, __ATOMIC_RELEASE);
    v = vd_vol_open(p, "c1");
    Fill(v, 2, 'D'); // a copy while a leg fails
    Fill(v, 1, 'E'); // in place
    vd_vol_close(v);
    ASSERT_EQ(vd_vol_clone(p, "c1", "c2"), 0);
    v = vd_vol_open(p, "c2");
    Fill(v, 3, 'F');
    vd_vol_close(v);
    v = vd_vol_open(p, "m");
    Fill(v, 0, 'H'); // the volume's copy-on-write
    vd_vol_close(v);
    ASSERT_EQ(vd_mirror_get_info(p, "m", &mi), 0);
    EXPECT_NE(mi.legs[1].state, VD_LEG_INSYNC);
    auto expect_all = [&]() {
        const char *c1 = "GEDG", *c2 = "GEDF", *gold = "GGGG", *head = "HGGG";
        for (int vc = 0; vc < 4; vc++) {
            EXPECT_EQ(ChunkOf(p, "c1", vc), c1[vc]) << vc;
            EXPECT_EQ(ChunkOf(p, "c2", vc), c2[vc]) << vc;
            EXPECT_EQ(ChunkOf(p, "m@base", vc), gold[vc]) << vc;
            EXPECT_EQ(ChunkOf(p, "m", vc), head[vc]) << vc;
        }
        struct vd_pool_check res;
        EXPECT_EQ(Check(p, &res), 0);
        EXPECT_EQ(res.leaked + res.bad, 0u);
    };
    expect_all();
    vd_pool_close(p); // closes the wrapper with the device
    p = Open();
    ASSERT_NE(p, nullptr);
    expect_all(); // (the leg answers again: it may be resyncing)
    for (const char *c : { "c1", "c2" })
        EXPECT_EQ(vd_vol_remove(p, c), 0) << c;
    EXPECT_EQ(vd_snap_remove(p, "m", "base"), 0);
    EXPECT_EQ(Allocated(p, "m"), 4 * CS);
    vd_pool_close(p);
}

// UNMAP on a clone: its own chunks over nothing of an ancestor are freed
// (space comes back at once, durable: a reopen reads zeroes and pool check
// is clean); a shared chunk, or its own copy of one, gets zeroes (freeing
// it would bring the ancestor's data back after a reopen).
TEST_F(Snap, Clone_Unmap_FreesOwnChunks_ZeroesOverShared_AfterReopenToo)
{
    vd_pool *p = CreateOpen();
    ASSERT_EQ(MakeThin(p, "gold", 64ull << 20), 0);
    vd_vol *v = vd_vol_open(p, "gold");
    for (uint64_t vc = 0; vc < 4; vc++)
        Fill(v, vc, 'G');
    vd_vol_close(v);
    ASSERT_EQ(vd_snap_create(p, "gold", "base"), 0);
    ASSERT_EQ(vd_vol_clone(p, "gold@base", "c1"), 0);
    v = vd_vol_open(p, "c1");
    ASSERT_NE(v, nullptr);
    Fill(v, 1, 'C'); // its own copy of a shared chunk
    for (uint64_t vc = 8; vc < 12; vc++)
        Fill(v, vc, 'N'); // its own, nothing beneath
    vd_vol_close(v);
    uint64_t before = Allocated(p, "gold");
    EXPECT_EQ(before, (4 + 1 + 4) * CS);
    v = vd_vol_open(p, "c1");
    // chunks 0-3 (shared 0, 2, 3; own copy 1) and 8-10, plus half of 11
    ASSERT_EQ(vd_vol_discard(v, 0, 4 * CS), 0);
    ASSERT_EQ(vd_vol_discard(v, 8 * CS, 3 * CS + CS / 2), 0);
    vd_vol_close(v);
    // 8-10 freed; 0, 2, 3 copied as zeroes, 1 zeroed in place, 11 half
    EXPECT_EQ(Allocated(p, "gold"), before - 3 * CS + 3 * CS);
    auto expect_all = [&]() {
        for (uint64_t vc = 0; vc < 4; vc++) {
            EXPECT_EQ(ChunkOf(p, "c1", vc), 0) << vc;
            EXPECT_EQ(ChunkOf(p, "gold@base", vc), 'G') << vc;
            EXPECT_EQ(ChunkOf(p, "gold", vc), 'G') << vc;
        }
        for (uint64_t vc = 8; vc < 11; vc++)
            EXPECT_EQ(ChunkOf(p, "c1", vc), 0) << vc;
        EXPECT_EQ(ChunkOf(p, "c1", 11), '?'); // zeroes, then 'N'
        struct vd_pool_check res;
        EXPECT_EQ(Check(p, &res), 0);
        EXPECT_EQ(res.leaked + res.bad, 0u);
    };
    expect_all();
    uint64_t after = Allocated(p, "gold");
    vd_pool_close(p);
    p = Open();
    ASSERT_NE(p, nullptr);
    expect_all();
    EXPECT_EQ(Allocated(p, "gold"), after);
    struct vd_pool_check res;
    EXPECT_EQ(Check(p, &res), 0);
    EXPECT_EQ(res.reclaimed, 0u);
    // with the snapshot gone, a clone's chunk the volume still holds
    // (gold's chunk 0, the clone's zero copy is its own now) stays zeroes
    ASSERT_EQ(vd_snap_remove(p, "gold", "base"), 0);
    v = vd_vol_open(p, "c1");
    Fill(v, 20, 'Z');
    ASSERT_EQ(vd_vol_discard(v, 0, 32 * CS), 0);
    vd_vol_close(v);
    EXPECT_EQ(ChunkOf(p, "c1", 20), 0);
    EXPECT_EQ(ChunkOf(p, "c1", 0), 0);
    vd_pool_close(p);
    p = Open();
    EXPECT_EQ(ChunkOf(p, "c1", 20), 0);
    EXPECT_EQ(ChunkOf(p, "c1", 0), 0);
    EXPECT_EQ(ChunkOf(p, "gold", 0), 'G');
    EXPECT_EQ(Check(p, &res), 0);
    EXPECT_EQ(vd_vol_remove(p, "c1"), 0);
    EXPECT_EQ(Allocated(p, "gold"), 4 * CS);
    vd_pool_close(p);
}
} // namespace

namespace {

// ---- vol import's mark (vd_vol_import_create) ------------------------------

// A volume being imported is created marked and open for its importer
// alone: every other open (LUN, export), a clone, a snapshot, a revert, an
// extend, a second create of the name are refused and change nothing; the
// reserved mark cannot be named by a user.  Unmarked, it is a plain thin
// volume with its data.
TEST_F(Snap, Import_Marked_OthersRefused_UnmarkedIsWhole)
{
    vd_pool *p = CreateOpen();
    struct vd_pool_info pi0, pi;
    ASSERT_EQ(vd_pool_get_info(p, &pi0), 0);
    vd_vol *v = nullptr;
    ASSERT_EQ(vd_vol_import_create(p, "img", 64ull << 20, nullptr, &v), 0);
    ASSERT_NE(v, nullptr);
    Fill(v, 0, 'I');
    Fill(v, 3, 'J');
    errno = 0;
    EXPECT_EQ(vd_vol_open(p, "img"), nullptr);
    EXPECT_EQ(errno, EBUSY);
    EXPECT_EQ(vd_vol_open(p, "img@.vdlvm-import"), nullptr);
    EXPECT_EQ(vd_vol_clone(p, "img", "c"), -EBUSY);
    EXPECT_EQ(vd_vol_clone(p, "img@.vdlvm-import", "c"), -EINVAL);
    EXPECT_EQ(vd_snap_create(p, "img", "s"), -EBUSY);
    EXPECT_EQ(vd_snap_create(p, "img", ".vdlvm-x"), -EINVAL);
    EXPECT_EQ(vd_snap_remove(p, "img", ".vdlvm-import"), -EINVAL);
    EXPECT_EQ(vd_vol_revert(p, "img", ".vdlvm-import", 1), -EINVAL);
    EXPECT_EQ(vd_vol_extend(p, "img", 128ull << 20), -EBUSY);
    EXPECT_EQ(vd_vol_remove(p, "img"), -EBUSY); // its importer has it open
    vd_vol *v2 = nullptr;
    EXPECT_EQ(vd_vol_import_create(p, "img", 64ull << 20, nullptr, &v2), -EEXIST);
    EXPECT_EQ(v2, nullptr);
    struct vd_clone_info ci;
    EXPECT_EQ(vd_clone_get_info(p, "c", &ci), -ENOENT);
    struct vd_snap_info *si = nullptr;
    size_t n = 99;
    ASSERT_EQ(vd_snap_list(p, "img", &si, &n), 0);
    EXPECT_EQ(n, 0u); // the mark is vdlvm's, not listed
    free(si);
    // the importer's data survive the refusals
    std::vector<char> b(CS);
    ASSERT_EQ(vd_vol_pread(v, b.data(), b.size(), 3 * CS), 0);
    EXPECT_EQ(b[0], 'J');
    ASSERT_EQ(vd_vol_flush(v), 0);
    ASSERT_EQ(vd_vol_import_mark(p, "img", 0), 0);
    vd_vol_close(v);
    // whole: a plain thin volume
    EXPECT_EQ(ChunkOf(p, "img", 0), 'I');
    EXPECT_EQ(ChunkOf(p, "img", 3), 'J');
    EXPECT_EQ(ChunkOf(p, "img", 1), 0);
    EXPECT_EQ(Allocated(p, "img"), 2 * CS);
    ASSERT_EQ(vd_snap_create(p, "img", "base"), 0);
    ASSERT_EQ(vd_vol_clone(p, "img@base", "c"), 0);
    EXPECT_EQ(ChunkOf(p, "c", 3), 'J');
    struct vd_pool_check res;
    EXPECT_EQ(Check(p, &res), 0);
    vd_pool_close(p);
    p = Open(); // whole volumes stay
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(ChunkOf(p, "img", 0), 'I');
    EXPECT_EQ(ChunkOf(p, "c", 3), 'J');
    ASSERT_EQ(vd_vol_remove(p, "c"), 0);
    ASSERT_EQ(vd_snap_remove(p, "img", "base"), 0);
    ASSERT_EQ(vd_vol_remove(p, "img"), 0);
    ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
    EXPECT_EQ(pi.free_bytes, pi0.free_bytes);
    vd_pool_close(p);
}

// A crash (the device images copied) at every point of an import: right
// after the create, mid-copy, after the flush, inside the mark's removal
// (before and after its record), after it.  Reopened, the pool holds no
// volume (every byte free again, the removal logged) or the whole one;
// pool check is clean; a re-run of the import works.
TEST_F(Snap, Import_CrashAtEveryPoint_NoVolumeOrAWholeOne)
{
    static Snap *self;
    static std::string want;
    static bool hit;
    self = this;
    const char *points[] = { "created",  "mid-copy",
                             "flushed",  "remove-after-record",
                             "unmarked" };
    for (const char *point : points) {
        SCOPED_TRACE(point);
        std::string pt = point;
        vd_pool *p = CreateOpen();
        struct vd_pool_info pi0;
        ASSERT_EQ(vd_pool_get_info(p, &pi0), 0);
        vd_vol *v = nullptr;
        ASSERT_EQ(vd_vol_import_create(p, "img", 64ull << 20, nullptr, &v), 0);
        if (pt == "created")
            CopyImages(".crash");
        for (uint64_t vc = 0; vc < 8; vc++) {
            Fill(v, vc, 'a' + vc);
            if (vc == 3 && pt == "mid-copy")
                CopyImages(".crash");
        }
        ASSERT_EQ(vd_vol_flush(v), 0);
        if (pt == "flushed")
            CopyImages(".crash");
        want = pt;
        hit = false;
        vd_snap_crash_hook = [](const char *st) {
            if (!hit && want == st) {
                hit = true;
                self->CopyImages(".crash");
            }
        };
        ASSERT_EQ(vd_vol_import_mark(p, "img", 0), 0);
        vd_snap_crash_hook = nullptr;
        vd_vol_close(v);
        if (pt == "unmarked")
            CopyImages(".crash");
        vd_pool_close(p);
        RestoreImages(".crash");
        log_lines.clear();
        p = Open();
        ASSERT_NE(p, nullptr);
        bool whole = pt == "remove-after-record" || pt == "unmarked";
        struct vd_vol_info vi;
        struct vd_pool_check res;
        EXPECT_EQ(Check(p, &res, 1), 0);
        EXPECT_EQ(res.bad + res.leaked, 0u);
        if (whole) {
            ASSERT_EQ(vd_vol_get_info(p, "img", &vi), 0);
            for (uint64_t vc = 0; vc < 8; vc++)
                EXPECT_EQ(ChunkOf(p, "img", vc), (char)('a' + vc)) << vc;
            EXPECT_EQ(Allocated(p, "img"), 8 * CS);
        } else {
            EXPECT_EQ(vd_vol_get_info(p, "img", &vi), -ENOENT);
            bool said = false;
            for (auto &l : log_lines)
                said |= l.find("'sp/img': its import was interrupted; removed") !=
                        std::string::npos;
            EXPECT_TRUE(said);
            struct vd_pool_info pi;
            ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
            EXPECT_EQ(pi.free_bytes, pi0.free_bytes);
            // a re-run starts afresh
            ASSERT_EQ(vd_vol_import_create(p, "img", 64ull << 20, nullptr, &v), 0);
            Fill(v, 0, 'z');
            ASSERT_EQ(vd_vol_flush(v), 0);
            ASSERT_EQ(vd_vol_import_mark(p, "img", 0), 0);
            vd_vol_close(v);
            EXPECT_EQ(ChunkOf(p, "img", 0), 'z');
        }
        vd_pool_close(p);
        p = Open();
        EXPECT_EQ(Check(p, &res), 0);
        EXPECT_EQ(res.leaked + res.bad, 0u);
        EXPECT_EQ(vd_vol_get_info(p, "img", &vi), 0);
        vd_pool_close(p);
        std::string cmd = "rm -f " + paths[0] + " " + paths[1];
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
}

// An importer that died without removing its volume (its own removal
// failed, say) while the pool stays open: `vol remove` removes the marked
// volume and its mark in one record once no one has it open.
TEST_F(Snap, Import_ImporterGone_VolRemoveCleansUp)
{
    vd_pool *p = CreateOpen();
    vd_vol *v = nullptr;
    ASSERT_EQ(vd_vol_import_create(p, "img", 32ull << 20, nullptr, &v), 0);
    Fill(v, 1, 'h');
    vd_vol_close(v);
    EXPECT_EQ(vd_vol_open(p, "img"), nullptr); // still half: refused
    ASSERT_EQ(vd_vol_remove(p, "img"), 0);
    struct vd_vol_info vi;
    EXPECT_EQ(vd_vol_get_info(p, "img", &vi), -ENOENT);
    struct vd_pool_check res;
    EXPECT_EQ(Check(p, &res), 0);
    EXPECT_EQ(res.leaked + res.bad, 0u);
    vd_pool_close(p);
}

// A clone's origin stays what it was cloned from when it is cloned in
// turn (it moves on to a new generation beside its own clone), at any
// depth, and after a reopen; a clone of the volume says the volume.
TEST_F(Snap, Clone_OriginKept_WhenItIsClonedInTurn)
{
    vd_pool *p = CreateOpen();
    ASSERT_EQ(MakeThin(p, "gold", 64ull << 20), 0);
    vd_vol *v = vd_vol_open(p, "gold");
    Fill(v, 0, 'G');
    vd_vol_close(v);
    ASSERT_EQ(vd_snap_create(p, "gold", "base"), 0);
    ASSERT_EQ(vd_vol_clone(p, "gold@base", "a"), 0);
    ASSERT_EQ(vd_vol_clone(p, "a", "b"), 0);
    ASSERT_EQ(vd_vol_clone(p, "a", "b2"), 0);
    ASSERT_EQ(vd_vol_clone(p, "b", "c"), 0);
    ASSERT_EQ(vd_vol_clone(p, "gold", "h"), 0);
    ASSERT_EQ(vd_vol_clone(p, "h", "h2"), 0);
    std::map<std::string, std::string> want = {
        { "a", "gold@base" }, { "b", "a" }, { "b2", "a" },
        { "c", "b" },         { "h", "gold" }, { "h2", "h" }
    };
    for (int round = 0; round < 2; round++) {
        for (auto &kv : want) {
            struct vd_clone_info ci;
            ASSERT_EQ(vd_clone_get_info(p, kv.first.c_str(), &ci), 0);
            EXPECT_EQ(std::string(ci.origin), kv.second) << kv.first;
        }
        EXPECT_EQ(ChunkOf(p, "c", 0), 'G');
        vd_pool_close(p);
        p = Open();
        ASSERT_NE(p, nullptr);
    }
    vd_pool_close(p);
}

// ---- vd_vol_create: the name checked under the admin lock -------------------

// Two creates of one name, the second run to its end where the first has
// passed its syntax check but not yet taken the admin lock (the window
// the old check-then-lock order left): the first must see the second's
// volume and fail, never create a duplicate.
TEST_F(Snap, VolCreate_RaceInTheWindow_SecondSeesTheFirst)
{
    static vd_pool *pp;
    static int inner_r;
    static bool in_hook;
    vd_pool *p = CreateOpen();
    pp = p;
    inner_r = 1;
    in_hook = false;
    g_vol_create_test_hook = [](const char *name) {
        if (in_hook)
            return;
        in_hook = true;
        pthread_t t;
        // a second admin thread creates the same name meanwhile
        ASSERT_EQ(pthread_create(
                      &t, nullptr,
                      [](void *) -> void * {
                          inner_r = MakeThin(pp, "v", 64ull << 20);
                          return nullptr;
                      },
                      nullptr),
                  0);
        pthread_join(t, nullptr);
    };
    int outer_r = MakeThin(p, "v", 32ull << 20);
    g_vol_create_test_hook = nullptr;
    EXPECT_EQ(inner_r, 0);
    EXPECT_EQ(outer_r, -EEXIST);
    uint32_t count = 0;
    for (uint32_t i = 0; i < p->nvols; i++)
        count += !strcmp(p->vols[i]->name, "v");
    EXPECT_EQ(count, 1u);
    struct vd_vol_info vi;
    ASSERT_EQ(vd_vol_get_info(p, "v", &vi), 0);
    EXPECT_EQ(vi.size, 64ull << 20); // the one that won
    vd_pool_close(p);
    p = Open(); // and the log replays: one volume of that name
    ASSERT_NE(p, nullptr);
    count = 0;
    for (uint32_t i = 0; i < p->nvols; i++)
        count += !strcmp(p->vols[i]->name, "v");
    EXPECT_EQ(count, 1u);
    vd_pool_close(p);
}

// Many threads create the same names at once, rounds of it: exactly one
// create of each name succeeds, the others get -EEXIST.
TEST_F(Snap, VolCreate_ConcurrentSameName_ExactlyOneWins)
{
    vd_pool *p = CreateOpen();
    const int T = 4, ROUNDS = 20;
    for (int round = 0; round < ROUNDS; round++) {
        std::string name = "r" + std::to_string(round);
        std::atomic<int> go{ 0 }, ok{ 0 }, exist{ 0 };
        std::vector<std::thread> ts;
        for (int i = 0; i < T; i++)
            ts.emplace_back([&, i] {
                while (!go.load())
                    ;
                int r = i % 2 ? MakeThin(p, name.c_str(), 4ull << 20)
                              : vd_vol_create(p, name.c_str(), 4ull << 20, nullptr);
                if (r == 0)
                    ok++;
                else if (r == -EEXIST)
                    exist++;
            });
        go = 1;
        for (auto &t : ts)
            t.join();
        EXPECT_EQ(ok.load(), 1) << name;
        EXPECT_EQ(exist.load(), T - 1) << name;
        EXPECT_EQ(p->nvols, 1u);
        ASSERT_EQ(vd_vol_remove(p, name.c_str()), 0);
    }
    vd_pool_close(p);
}

} // namespace
