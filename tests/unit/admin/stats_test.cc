// Unit tests for admin/stats.c (and the counters of pool/stats.c): the
// Prometheus formatter (names, label escaping, cumulative histogram
// buckets), vd_prom_merge, `stats` over counters of this process, device
// error and reconnect counters; and the progress of a running verify
// (replica/verify.c) as `status` shows it (admin/vol.c).
// GCC 12 warns about libstdc++'s own <regex> code when built with
// -fsanitize=address (make check-asan): a known false positive
// (-Wmaybe-uninitialized in std::function inside regex_automaton.h).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#include <sstream>

#include "tests/unit/admin_fixture.h"

extern "C" {
#include "admin/admin_int.h"
#include "admin/progress_jobs.h"
#include "pool/pool_int.h"
#include "pool/stats.h"
#include "replica/vdreplica.h"
}

using namespace vdtest_admin;

namespace {

std::vector<std::string> Lines(const std::string &s)
{
    std::vector<std::string> v;
    std::istringstream in(s);
    std::string l;
    while (std::getline(in, l))
        v.push_back(l);
    return v;
}

// Every line of an exposition: a HELP/TYPE pair per family, before its
// samples, names vdlvm_[a-z_]+, counters ending in _total, one family block
// per name.  Returns "" or what is wrong.
std::string CheckExposition(const std::string &text)
{
    static const std::regex sample(
        R"(^(vdlvm_[a-z_]+)(\{[a-z_]+="([^"\\]|\\.)*"(,[a-z_]+="([^"\\]|\\.)*")*\})? [0-9.e+-]+$)");
    std::map<std::string, std::string> type;
    std::string fam;
    for (auto &l : Lines(text)) {
        std::smatch m;
        if (l.rfind("# HELP ", 0) == 0) {
            fam = l.substr(7, l.find(' ', 7) - 7);
            if (type.count(fam))
                return "family " + fam + " appears twice";
            type[fam] = "";
        } else if (l.rfind("# TYPE ", 0) == 0) {
            std::string n = l.substr(7, l.find(' ', 7) - 7);
            if (n != fam)
                return "TYPE " + n + " without its HELP";
            type[fam] = l.substr(l.rfind(' ') + 1);
        } else if (std::regex_match(l, m, sample)) {
            std::string n = m[1];
            std::string base = n;
            for (const char *suf : { "_bucket", "_sum", "_count" })
                if (type[fam] == "histogram" && n.size() > strlen(suf) &&
                    n.compare(n.size() - strlen(suf), strlen(suf), suf) == 0)
                    base = n.substr(0, n.size() - strlen(suf));
            if (base != fam)
                return "sample " + n + " outside its family (" + fam + ")";
            if (type[fam] == "counter" &&
                n.compare(n.size() - 6, 6, "_total") != 0)
                return "counter " + n + " does not end in _total";
        } else {
            return "bad line: " + l;
        }
    }
    return "";
}

TEST(PromFormat, LabelValue_EscapesBackslashQuoteNewline)
{
    Output o;
    admin_prom_label_value(o.out, "a\"b\\c\nd");
    EXPECT_EQ(o.Out(), "a\\\"b\\\\c\\nd");
}

TEST(PromFormat, Sample_LabelsInOrderAndEscaped)
{
    Output o;
    const char *l[] = { "pool", "p0", "volume", "v\"1", nullptr };
    admin_prom_sample(o.out, "vdlvm_x_total", l, 42);
    const char *none[] = { nullptr };
    admin_prom_sample(o.out, "vdlvm_y", none, 0);
    EXPECT_EQ(o.Out(), "vdlvm_x_total{pool=\"p0\",volume=\"v\\\"1\"} 42\n"
                       "vdlvm_y 0\n");
}

TEST(PromFormat, Family_HelpEscapedAndTypeLine)
{
    Output o;
    admin_prom_family(o.out, "vdlvm_a", "gauge", "line\\one\ntwo \"q\"");
    EXPECT_EQ(o.Out(), "# HELP vdlvm_a line\\\\one\\ntwo \"q\"\n"
                       "# TYPE vdlvm_a gauge\n");
}

TEST(PromFormat, Histogram_BucketsCumulativeCountIsInf)
{
    Output o;
    const uint64_t bounds[] = { 1000, 5000 }; // us
    const uint64_t buckets[] = { 2, 3, 4 };   // per bucket, last +Inf
    const char *l[] = { "op", "read", nullptr };
    admin_prom_histogram(o.out, "vdlvm_h_seconds", l, bounds, 2, buckets,
                         1500000000ull);
    EXPECT_EQ(o.Out(),
              "vdlvm_h_seconds_bucket{op=\"read\",le=\"0.001\"} 2\n"
              "vdlvm_h_seconds_bucket{op=\"read\",le=\"0.005\"} 5\n"
              "vdlvm_h_seconds_bucket{op=\"read\",le=\"+Inf\"} 9\n"
              "vdlvm_h_seconds_sum{op=\"read\"} 1.500000000\n"
              "vdlvm_h_seconds_count{op=\"read\"} 9\n");
}

TEST(PromFormat, LatBucket_BoundsAreInclusive)
{
    EXPECT_EQ(vd_lat_bucket(0), 0u);
    EXPECT_EQ(vd_lat_bucket(vd_lat_bounds_us[0] * 1000), 0u);
    EXPECT_EQ(vd_lat_bucket(vd_lat_bounds_us[0] * 1000 + 1), 1u);
    EXPECT_EQ(vd_lat_bucket(vd_lat_bounds_us[VD_LAT_NBOUNDS - 1] * 1000 + 1),
              (unsigned)VD_LAT_NBOUNDS);
    for (int i = 1; i < VD_LAT_NBOUNDS; i++)
        EXPECT_LT(vd_lat_bounds_us[i - 1], vd_lat_bounds_us[i]);
}

TEST(PromFormat, Merge_OneBlockPerFamily)
{
    std::string a = "# HELP vdlvm_a A\n# TYPE vdlvm_a gauge\nvdlvm_a{pool=\"p\"} 1\n"
                    "# HELP vdlvm_b B\n# TYPE vdlvm_b gauge\nvdlvm_b{pool=\"p\"} 2\n";
    std::string b = "# HELP vdlvm_a A\n# TYPE vdlvm_a gauge\nvdlvm_a{pool=\"q\"} 3\n"
                    "# HELP vdlvm_c C\n# TYPE vdlvm_c gauge\nvdlvm_c{pool=\"q\"} 4\n";
    char *texts[] = { &a[0], &b[0] };
    Output o;
    ASSERT_EQ(vd_prom_merge(texts, 2, o.out), 0);
    EXPECT_EQ(o.Out(), "# HELP vdlvm_a A\n# TYPE vdlvm_a gauge\n"
                       "vdlvm_a{pool=\"p\"} 1\nvdlvm_a{pool=\"q\"} 3\n"
                       "# HELP vdlvm_b B\n# TYPE vdlvm_b gauge\n"
                       "vdlvm_b{pool=\"p\"} 2\n"
                       "# HELP vdlvm_c C\n# TYPE vdlvm_c gauge\n"
                       "vdlvm_c{pool=\"q\"} 4\n");
    EXPECT_EQ(CheckExposition(o.Out()), "");
}

TEST_F(AdminPool, Stats_NotExported_OfflinePartOnly)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "8M" }), 0);
    ASSERT_EQ(Exec(p, { "stats", "pool0" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("not exported"), std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--json" }, &out, &err), 0) << err;
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"exported\":false"), std::string::npos) << out;
    EXPECT_NE(out.find("\"io\":null"), std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--prometheus" }, &out, &err), 0);
    EXPECT_EQ(CheckExposition(out), "") << out;
    EXPECT_NE(out.find("vdlvm_pool_exported{pool=\"pool0\"} 0\n"),
              std::string::npos);
    EXPECT_EQ(out.find("vdlvm_volume_reads_total"), std::string::npos) << out;
    // Device counters are of the process that has the pool open: shown,
    // at 0 here.
    EXPECT_NE(out.find("vdlvm_device_errors_total{pool=\"pool0\",device="
                       "\"d0\",op=\"flush\"} 0\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("vdlvm_device_reconnects_total{pool=\"pool0\","
                       "device=\"d1\"} 0\n"),
              std::string::npos)
        << out;
    EXPECT_EQ(Exec(p, { "stats", "pool0", "--json", "--prometheus" }, &out,
                    &err),
              VD_EXIT_USAGE);
    EXPECT_EQ(Exec(p, { "stats", "pool0/nope" }, &out, &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("not found"), std::string::npos) << err;
    vd_pool_close(p);
}

// A long command running in this process (published as inside tgtd) and
// the mover's state, in every form of stats.
TEST_F(AdminPool, Stats_JobsAndMoveProgress)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "8M" }), 0);
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--json" }, &out, &err), 0) << err;
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"move\":{\"evacuate\":null,\"rebalance\":null,"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("\"jobs\":[]}"), std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--prometheus" }, &out, &err), 0);
    EXPECT_EQ(CheckExposition(out), "") << out;
    EXPECT_NE(out.find("vdlvm_pool_move_running{pool=\"pool0\","
                       "job=\"evacuate\"} 0\n"),
              std::string::npos)
        << out;
    EXPECT_EQ(out.find("vdlvm_job_"), std::string::npos) << out;

    Output o; // a memory stream: as inside tgtd
    struct admin_progress pg;
    admin_progress_start(&pg, o.err, "import pool0/vol0", 8 << 20, -1);
    admin_progress_update(&pg, 2 << 20, 8 << 20);
    ASSERT_EQ(Exec(p, { "stats", "pool0/vol0", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"jobs\":[{\"job\":\"import\",\"object\":"
                       "\"pool0/vol0\",\"done_bytes\":2097152,"
                       "\"total_bytes\":8388608,"),
              std::string::npos)
        << out;
    ASSERT_EQ(Exec(p, { "stats", "pool0" }, &out, &err), 0);
    EXPECT_NE(out.find("  import pool0/vol0: [#######......................."
                       "]  25%  2MiB of 8MiB"),
              std::string::npos)
        << out;
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--prometheus" }, &out, &err), 0);
    EXPECT_EQ(CheckExposition(out), "") << out;
    EXPECT_NE(out.find("vdlvm_job_done_bytes{pool=\"pool0\",object=\"pool0/"
                       "vol0\",job=\"import\"} 2097152\n"),
              std::string::npos)
        << out;
    admin_progress_end(&pg, "imported");
    EXPECT_EQ(o.Err(), ""); // drawn by the client, not here
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"jobs\":[]}"), std::string::npos) << out;
    vd_pool_close(p);
}

TEST_F(AdminPool, Stats_CountersOfThisProcess_InEveryForm)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "8M" }), 0);
    // What bs_vdlvm.so does per LU and per command.
    vd_vol_stats *s = vd_vol_stats_get("pool0", "vol0");
    ASSERT_NE(s, nullptr);
    struct vd_vol_stats_snap *snap;
    size_t n;
    ASSERT_EQ(vd_vol_stats_snapshot("pool0", &snap, &n), 0);
    ASSERT_EQ(n, 1u);
    struct vd_io_counters before = snap[0].c;
    free(snap);
    for (int i = 0; i < 5; i++)
        vd_vol_stats_account(s, VD_IO_OP_READ, 4096, 30000, 0); // 30 us
    vd_vol_stats_account(s, VD_IO_OP_READ, 0, 2000000000ull, 1);   // 2 s, failed
    vd_vol_stats_account(s, VD_IO_OP_WRITE, 65536, 300000, 0);      // 300 us

    ASSERT_EQ(vd_vol_stats_snapshot("pool0", &snap, &n), 0);
    ASSERT_EQ(n, 1u);
    EXPECT_EQ(snap[0].luns, 1u);
    EXPECT_EQ(snap[0].c.ops[VD_IO_OP_READ] - before.ops[VD_IO_OP_READ], 6u);
    EXPECT_EQ(snap[0].c.bytes[VD_IO_OP_READ] - before.bytes[VD_IO_OP_READ],
              5u * 4096);
    EXPECT_EQ(snap[0].c.errors[VD_IO_OP_READ] - before.errors[VD_IO_OP_READ],
              1u);
    EXPECT_EQ(snap[0].c.lat[VD_IO_OP_READ][0] - before.lat[VD_IO_OP_READ][0],
              5u);
    struct vd_io_counters now = snap[0].c;
    free(snap);

    ASSERT_EQ(Exec(p, { "stats", "pool0/vol0", "--json" }, &out, &err), 0)
        << err;
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"exported\":true"), std::string::npos) << out;
    EXPECT_NE(out.find("\"reads\":" +
                       std::to_string(now.ops[VD_IO_OP_READ])),
              std::string::npos)
        << out;

    ASSERT_EQ(Exec(p, { "stats", "pool0", "--prometheus" }, &out, &err), 0);
    EXPECT_EQ(CheckExposition(out), "") << out;
    EXPECT_NE(out.find("vdlvm_volume_read_bytes_total{pool=\"pool0\","
                       "volume=\"vol0\"} " +
                       std::to_string(now.bytes[VD_IO_OP_READ]) + "\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("vdlvm_volume_errors_total{pool=\"pool0\",volume="
                       "\"vol0\",op=\"read\"} " +
                       std::to_string(now.errors[VD_IO_OP_READ]) + "\n"),
              std::string::npos)
        << out;
    uint64_t reads = now.ops[VD_IO_OP_READ];
    EXPECT_NE(out.find("vdlvm_volume_io_latency_seconds_bucket{pool=\"pool0\","
                       "volume=\"vol0\",op=\"read\",le=\"+Inf\"} " +
                       std::to_string(reads) + "\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("vdlvm_volume_io_latency_seconds_count{pool=\"pool0\","
                       "volume=\"vol0\",op=\"read\"} " +
                       std::to_string(reads) + "\n"),
              std::string::npos)
        << out;

    ASSERT_EQ(Exec(p, { "stats", "pool0" }, &out, &err), 0);
    EXPECT_NE(out.find("exported by this host's tgtd"), std::string::npos);

    vd_vol_stats_put(s); // no LUN any more: not exported, counters kept
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"exported\":false"), std::string::npos) << out;
    vd_pool_close(p);
}

// A device whose reads, writes and flushes fail (what a dying disk or a
// lost peer looks like to dev.c).
static const struct vd_bdev_ops *g_real_ops;
static struct vd_bdev_ops g_failing_ops;
static int FailRead(struct vd_bdev *, void *, size_t, uint64_t) { return -EIO; }
static int FailWrite(struct vd_bdev *, const void *, size_t, uint64_t, unsigned)
{
    return -EIO;
}
static int FailFlush(struct vd_bdev *) { return -EIO; }

TEST_F(AdminPool, Stats_DeviceErrorsAndReconnects_Rise)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    struct vd_dev *d = &p->devs[1];
    ASSERT_NE(d->bdev, nullptr);
    g_real_ops = d->bdev->ops;
    g_failing_ops = *g_real_ops;
    g_failing_ops.pread = FailRead;
    g_failing_ops.pread_nowait = nullptr;
    g_failing_ops.pwrite = FailWrite;
    g_failing_ops.flush = FailFlush;
    g_failing_ops.submit = nullptr;
    d->bdev->ops = &g_failing_ops;
    alignas(4096) static char buf[4096];
    EXPECT_EQ(vd_dev_pread(d, buf, sizeof(buf), d->data_offset), -EIO);
    EXPECT_EQ(vd_dev_pread(d, buf, sizeof(buf), d->data_offset), -EIO);
    EXPECT_EQ(vd_dev_pwrite(d, buf, sizeof(buf), d->data_offset, 0), -EIO);
    __atomic_add_fetch(&d->wgen, 1, __ATOMIC_RELEASE); // something to flush
    EXPECT_EQ(vd_dev_flush(d), -EIO);
    __atomic_add_fetch(&d->bdev->n_reconnects, 3, __ATOMIC_RELAXED);
    d->bdev->ops = g_real_ops;

    struct vd_dev_counters c;
    ASSERT_EQ(vd_pool_dev_get_counters(p, 1, &c), 0);
    EXPECT_EQ(c.read_errors, 2u);
    EXPECT_EQ(c.write_errors, 1u);
    EXPECT_EQ(c.flush_errors, 1u);
    EXPECT_EQ(c.reconnects, 3u);
    EXPECT_EQ(vd_pool_dev_get_counters(p, 7, &c), -ENOENT);

    ASSERT_EQ(Exec(p, { "stats", "pool0", "--prometheus" }, &out, &err), 0);
    EXPECT_EQ(CheckExposition(out), "") << out;
    for (auto &l : { "vdlvm_device_errors_total{pool=\"pool0\",device=\"d1\","
                     "op=\"read\"} 2\n",
                     "vdlvm_device_errors_total{pool=\"pool0\",device=\"d1\","
                     "op=\"write\"} 1\n",
                     "vdlvm_device_errors_total{pool=\"pool0\",device=\"d1\","
                     "op=\"flush\"} 1\n",
                     "vdlvm_device_errors_total{pool=\"pool0\",device=\"d0\","
                     "op=\"read\"} 0\n",
                     "vdlvm_device_reconnects_total{pool=\"pool0\",device="
                     "\"d1\"} 3\n" })
        EXPECT_NE(out.find(l), std::string::npos) << l << out;
    ASSERT_EQ(Exec(p, { "stats", "pool0", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("\"errors\":{\"read\":2,\"write\":1,\"flush\":1},"
                       "\"reconnects\":3"),
              std::string::npos)
        << out;
    ASSERT_EQ(Exec(p, { "stats", "pool0" }, &out, &err), 0);
    EXPECT_NE(out.find("2/1/1"), std::string::npos) << out;
    vd_pool_close(p);
}

// What `status` shows while a verify runs: the progress callback runs on
// the verifying thread with no lock held, so status can be run from it.
struct VerifyProbe {
    vd_pool *p;
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    std::string text, json, vol_json;
};
static std::string Run(vd_pool *p, std::initializer_list<const char *> a)
{
    Argv av(a);
    Output o;
    vd_admin_exec(p, av.argc(), av.argv(), o.out, o.err);
    return o.Out();
}
static void ProbeProgress(void *arg, uint64_t done, uint64_t total)
{
    auto *v = (VerifyProbe *)arg;
    v->calls.push_back({ done, total });
    if (v->calls.size() == 3) { // after two regions
        v->text = Run(v->p, { "status", "pool0" });
        v->json = Run(v->p, { "status", "pool0", "--json" });
        v->vol_json = Run(v->p, { "status", "pool0/m", "--json" });
    }
}

TEST_F(AdminPool, Verify_ProgressCallbackAndStatusWhileRunning)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/m", "--size", "8M", "--layout",
                        "mirror", "--allow-same-node", "--region-size", "1MiB" },
                   &out, &err),
              0)
        << err;
    VerifyProbe v{ p, {}, "", "", "" };
    struct vd_verify_result res;
    ASSERT_EQ(vd_mirror_verify_cb(p, "m", 0, &res, ProbeProgress, &v), 0);
    EXPECT_EQ(res.ndiff, 0u);
    ASSERT_EQ(v.calls.size(), res.regions + 1);
    const uint64_t total = 8ull << 20;
    for (size_t i = 0; i < v.calls.size(); i++) {
        EXPECT_EQ(v.calls[i].second, total);
        EXPECT_EQ(v.calls[i].first, std::min<uint64_t>(i << 20, total)) << i;
    }
    vd_verify_result_free(&res);

    EXPECT_NE(v.text.find("  verify 'm': [######"), std::string::npos)
        << v.text;
    EXPECT_NE(v.text.find(" 25%  2MiB of 8MiB"), std::string::npos) << v.text;
    EXPECT_NE(v.text.find("0 regions differ"), std::string::npos) << v.text;
    EXPECT_TRUE(Json::Valid(v.json)) << v.json;
    EXPECT_NE(v.json.find("\"verify\":[{\"volume\":\"m\",\"repair\":false,"
                          "\"done_bytes\":2097152,\"total_bytes\":8388608,"
                          "\"differing_regions\":0,"),
              std::string::npos)
        << v.json;
    EXPECT_TRUE(Json::Valid(v.vol_json)) << v.vol_json;
    EXPECT_NE(v.vol_json.find("\"verify\":{\"volume\":\"m\""),
              std::string::npos)
        << v.vol_json;

    // Done: nothing running any more.
    ASSERT_EQ(Exec(p, { "status", "pool0", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"verify\":[]"), std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "status", "pool0/m", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"verify\":null"), std::string::npos) << out;
    ASSERT_EQ(Exec(p, { "status", "pool0" }, &out, &err), 0);
    EXPECT_EQ(out.find("verify '"), std::string::npos) << out;
    struct vd_verify_progress *vp;
    size_t n;
    ASSERT_EQ(vd_mirror_verify_progress(p, nullptr, &vp, &n), 0);
    EXPECT_EQ(n, 0u);
    free(vp);
    vd_pool_close(p);
}

} // namespace
