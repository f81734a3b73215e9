// Unit tests for config/config.c: sizes, durations, names and the YAML pool
// definition with its error messages.
#include <gtest/gtest.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "config/vdconfig.h"

namespace {

// ---- helpers -----------------------------------------------------------

struct ParseResult {
    int rc;
    std::string err;
    vd_conf_pool *conf;
};

ParseResult Parse(const std::string &yaml, const char *file = "t.yaml")
{
    char err[1024];
    memset(err, 'x', sizeof(err));
    vd_conf_pool *conf = nullptr;
    int rc = vd_conf_parse(file, yaml.data(), yaml.size(), &conf, err,
                           sizeof(err));
    return {rc, err, conf};
}

// Expects a failure whose message starts with `prefix` ("t.yaml:L:C: ") and
// contains `what`; checks that nothing was returned.
::testing::AssertionResult ParseFails(const std::string &yaml,
                                      const std::string &prefix,
                                      const std::string &what)
{
    char err[1024];
    vd_conf_pool sentinel{};
    vd_conf_pool *conf = &sentinel;
    int rc = vd_conf_parse("t.yaml", yaml.data(), yaml.size(), &conf, err,
                           sizeof(err));
    if (rc != -EINVAL)
        return ::testing::AssertionFailure()
               << "rc " << rc << " (want -EINVAL), err: " << err;
    if (conf != &sentinel)
        return ::testing::AssertionFailure() << "*out was changed on error";
    std::string e(err);
    if (e.rfind(prefix, 0) != 0)
        return ::testing::AssertionFailure()
               << "message '" << e << "' does not start with '" << prefix
               << "'";
    if (e.find(what) == std::string::npos)
        return ::testing::AssertionFailure()
               << "message '" << e << "' does not contain '" << what << "'";
    if (e.find('\n') != std::string::npos)
        return ::testing::AssertionFailure() << "message has a newline";
    return ::testing::AssertionSuccess();
}

std::string Str(const char *s)
{
    return s ? s : "(null)";
}

uint64_t Size(const char *s)
{
    uint64_t v = 12345;
    EXPECT_EQ(0, vd_size_parse(s, &v)) << s;
    return v;
}

int SizeRc(const char *s)
{
    uint64_t v = 12345;
    int rc = vd_size_parse(s, &v);
    if (rc) {
        EXPECT_EQ(12345u, v) << "output written on error for " << s;
    }
    return rc;
}

std::string Fmt(uint64_t v)
{
    char buf[64];
    vd_size_format(v, buf, sizeof(buf));
    return buf;
}

uint32_t Dur(const char *s)
{
    uint32_t v = 777;
    EXPECT_EQ(0, vd_duration_parse(s, &v)) << s;
    return v;
}

int DurRc(const char *s)
{
    uint32_t v = 777;
    int rc = vd_duration_parse(s, &v);
    if (rc) {
        EXPECT_EQ(777u, v) << "output written on error for " << s;
    }
    return rc;
}

// A scratch directory removed at the end of the test.
class TempDir {
  public:
    TempDir()
    {
        const char *t = getenv("TMPDIR");
        std::string tmpl = std::string(t && *t ? t : "/tmp") +
                           "/vdconfig-test.XXXXXX";
        std::vector<char> b(tmpl.begin(), tmpl.end());
        b.push_back('\0');
        if (mkdtemp(b.data()))
            path_ = b.data();
    }
    ~TempDir()
    {
        for (auto &f : files_)
            unlink(f.c_str());
        if (!path_.empty())
            rmdir(path_.c_str());
    }
    const std::string &path() const { return path_; }
    std::string Add(const std::string &name)
    {
        std::string p = path_ + "/" + name;
        files_.push_back(p);
        return p;
    }
    std::string Write(const std::string &name, const std::string &data)
    {
        std::string p = Add(name);
        FILE *f = fopen(p.c_str(), "w");
        EXPECT_NE(nullptr, f);
        if (f) {
            fwrite(data.data(), 1, data.size(), f);
            fclose(f);
        }
        return p;
    }

  private:
    std::string path_;
    std::vector<std::string> files_;
};

const char kFullExample[] =
    "pool: pool0\n"
    "extent_size: 8MiB\n"
    "devices:\n"
    "  - name: d0\n"
    "    path: /var/lib/vdlvm/d0.img\n"
    "    size: 200MiB\n"
    "    node: nodea\n"
    "  - name: b0\n"
    "    iscsi: iscsi://198.51.100.2:3260/iqn.2026-11.org.example:nodeb/1\n"
    "    node: nodeb\n"
    "    chap: {user: vdlvm, secret_file: /etc/vdlvm/b0.secret}\n"
    "    timeout: 10s\n";

// Writes conf back as YAML (the test's own emitter) for the round trip.
std::string ToYaml(const vd_conf_pool *c)
{
    char sz[64];
    std::string y = "pool: " + Str(c->name) + "\n";
    vd_size_format(c->extent_size, sz, sizeof(sz));
    y += std::string("extent_size: ") + sz + "\ndevices:\n";
    for (size_t i = 0; i < c->ndevs; i++) {
        const vd_conf_dev *d = &c->devs[i];
        y += "  - name: " + Str(d->name) + "\n";
        if (d->path) {
            y += "    path: \"" + Str(d->path) + "\"\n";
            if (d->size) {
                vd_size_format(d->size, sz, sizeof(sz));
                y += std::string("    size: ") + sz + "\n";
            }
        } else {
            y += "    iscsi: \"" + Str(d->iscsi_url) + "\"\n";
            if (d->chap_user)
                y += "    chap:\n      user: \"" + Str(d->chap_user) +
                     "\"\n      secret_file: \"" +
                     Str(d->chap_secret_file) + "\"\n";
            y += "    timeout: " + std::to_string(d->timeout_ms) + "ms\n";
        }
        y += "    node: " + Str(d->node) + "\n";
    }
    return y;
}

std::string Hostname()
{
    char h[HOST_NAME_MAX + 1] = "";
    gethostname(h, sizeof(h) - 1);
    return h;
}

// ---- sizes ---------------------------------------------------------------

TEST(SizeParse, PlainNumber_IsBytes)
{
    EXPECT_EQ(0u, Size("0"));
    EXPECT_EQ(512u, Size("512"));
    EXPECT_EQ(10u, Size("10B"));
    EXPECT_EQ(10u, Size("010"));
}

TEST(SizeParse, KiBSuffix_Multiplies)
{
    EXPECT_EQ(4096u, Size("4KiB"));
    EXPECT_EQ(4096u, Size("4K"));
}

TEST(SizeParse, MiBSuffix_Multiplies)
{
    EXPECT_EQ(200ull << 20, Size("200MiB"));
    EXPECT_EQ(4ull << 20, Size("4M"));
}

TEST(SizeParse, GiBSuffix_Multiplies)
{
    EXPECT_EQ(1ull << 30, Size("1GiB"));
    EXPECT_EQ(3ull << 30, Size("3G"));
}

TEST(SizeParse, TiBSuffix_Multiplies)
{
    EXPECT_EQ(3ull << 40, Size("3T"));
    EXPECT_EQ(2ull << 40, Size("2TiB"));
}

TEST(SizeParse, ExactFraction_Accepted)
{
    EXPECT_EQ(3ull << 29, Size("1.5GiB"));
    EXPECT_EQ(512u, Size("0.5K"));
    EXPECT_EQ(5ull << 28, Size("1.25G"));
    EXPECT_EQ(1ull << 20, Size("1.000MiB"));
}

TEST(SizeParse, InexactFraction_Rejected)
{
    EXPECT_EQ(-EINVAL, SizeRc("1.1K"));     // 1126.4 bytes
    EXPECT_EQ(-EINVAL, SizeRc("1.5"));      // half a byte
    EXPECT_EQ(-EINVAL, SizeRc("0.1B"));
}

TEST(SizeParse, Garbage_Rejected)
{
    const char *bad[] = {"",     "abc",  "MiB",  "4mib", "4MB",  "4 MiB",
                         " 4M",  "4M ",  "+4",   "4.",   ".5M",  "0x10",
                         "4Mi",  "4KB",  "4k",   "1e3",  "4MiBB", "4iB",
                         "4P",   "4PiB", "1,5G", "--1",  "4\n"};
    for (const char *s : bad)
        EXPECT_EQ(-EINVAL, SizeRc(s)) << "'" << s << "'";
    uint64_t v;
    EXPECT_EQ(-EINVAL, vd_size_parse(nullptr, &v));
}

TEST(SizeParse, Negative_Rejected)
{
    EXPECT_EQ(-EINVAL, SizeRc("-1"));
    EXPECT_EQ(-EINVAL, SizeRc("-4MiB"));
}

TEST(SizeParse, Overflow_ReturnsERANGE)
{
    EXPECT_EQ(UINT64_MAX, Size("18446744073709551615"));
    EXPECT_EQ(-ERANGE, SizeRc("18446744073709551616"));
    EXPECT_EQ(-ERANGE, SizeRc("99999999999999999999999999"));
    EXPECT_EQ(16777215ull << 40, Size("16777215TiB"));
    EXPECT_EQ(-ERANGE, SizeRc("16777216TiB"));
    EXPECT_EQ(-ERANGE, SizeRc("17179869184G"));
    EXPECT_EQ((16777215ull << 40) + (1ull << 39), Size("16777215.5TiB"));
    EXPECT_EQ(-ERANGE, SizeRc("18446744073709551615.5K"));
}

TEST(SizeParseMax, AboveMax_TooLargeWithExactLimit)
{
    uint64_t v = 7;
    char m[512];
    EXPECT_EQ(-ERANGE, vd_size_parse_max("5MiB", 4ull << 20, &v, m, sizeof(m)));
    EXPECT_EQ(7u, v);
    EXPECT_STREQ("'5MiB' is too large (at most 4MiB)", m);
    EXPECT_EQ(-ERANGE, vd_size_parse_max("18446744073709551616", UINT64_MAX, &v,
                                         m, sizeof(m)));
    EXPECT_STREQ("'18446744073709551616' is too large (at most "
                 "18446744073709551615 bytes)", m);
    EXPECT_EQ(0, vd_size_parse_max("4MiB", 4ull << 20, &v, m, sizeof(m)));
    EXPECT_EQ(4ull << 20, v);
    EXPECT_STREQ("", m);
}

TEST(SizeParseMax, NotASize_StatesTheRule)
{
    uint64_t v = 7;
    char m[512];
    EXPECT_EQ(-EINVAL, vd_size_parse_max("1.3KiB", UINT64_MAX, &v, m, sizeof(m)));
    EXPECT_EQ(std::string("'1.3KiB' is not a whole number of bytes; ") + VD_SIZE_RULE, m);
    EXPECT_EQ(-EINVAL, vd_size_parse_max("4\x01MB", UINT64_MAX, &v, m, sizeof(m)));
    EXPECT_EQ(std::string("'4?MB' is not a size; ") + VD_SIZE_RULE, m);
    EXPECT_EQ(-EINVAL, vd_size_parse_max(nullptr, UINT64_MAX, &v, nullptr, 0));
    EXPECT_EQ(7u, v);
}

TEST(SizeExact, NeverRounds)
{
    char b[64];
    vd_size_exact(4ull << 20, b, sizeof(b));
    EXPECT_STREQ("4MiB", b);
    vd_size_exact((4ull << 20) + 512, b, sizeof(b));
    EXPECT_STREQ("4194816 bytes", b);
    vd_size_exact(UINT64_MAX - (4ull << 20) + 1, b, sizeof(b));
    EXPECT_STREQ("17592186044412MiB", b);
    vd_size_exact(0, b, sizeof(b));
    EXPECT_STREQ("0 bytes", b);
}

// ---- size format -----------------------------------------------------------

TEST(SizeFormat, WholeUnits_PrintedWithoutFraction)
{
    EXPECT_EQ("0B", Fmt(0));
    EXPECT_EQ("512B", Fmt(512));
    EXPECT_EQ("1023B", Fmt(1023));
    EXPECT_EQ("1KiB", Fmt(1024));
    EXPECT_EQ("4MiB", Fmt(4ull << 20));
    EXPECT_EQ("200MiB", Fmt(200ull << 20));
    EXPECT_EQ("1GiB", Fmt(1ull << 30));
    EXPECT_EQ("3TiB", Fmt(3ull << 40));
    EXPECT_EQ("1024TiB", Fmt(1ull << 50));
}

TEST(SizeFormat, Fractions_ShortestOfTwoDecimals)
{
    EXPECT_EQ("1.5GiB", Fmt(3ull << 29));
    EXPECT_EQ("1.25GiB", Fmt(5ull << 28));
    EXPECT_EQ("1.5KiB", Fmt(1536));
    EXPECT_EQ("2KiB", Fmt(2047));          // rounds up to the next whole
    EXPECT_EQ("1MiB", Fmt((1ull << 20) - 1));
    EXPECT_EQ("1023B", Fmt(1023));
    EXPECT_EQ("1.01MiB", Fmt((1ull << 20) + 10486));
    EXPECT_EQ("16777216TiB", Fmt(UINT64_MAX));
}

TEST(SizeFormat, ExactOutput_ParsesBackToSameValue)
{
    const uint64_t vals[] = {0,          1,          1023,      1024,
                             1536,       4ull << 20, 3ull << 29, 5ull << 28,
                             7ull << 40, 1ull << 20 | 1ull << 19};
    for (uint64_t v : vals) {
        std::string s = Fmt(v);
        EXPECT_EQ(v, Size(s.c_str())) << s;
    }
}

TEST(SizeFormat, SmallBuffer_TruncatedAndTerminated)
{
    char buf[4];
    memset(buf, 'x', sizeof(buf));
    vd_size_format(200ull << 20, buf, sizeof(buf));
    EXPECT_STREQ("200", buf);
    vd_size_format(1, buf, 0);  // must not write
    EXPECT_STREQ("200", buf);
}

// ---- durations -------------------------------------------------------------

TEST(DurationParse, Units_ConvertToMilliseconds)
{
    EXPECT_EQ(30000u, Dur("30s"));
    EXPECT_EQ(500u, Dur("500ms"));
    EXPECT_EQ(120000u, Dur("2m"));
    EXPECT_EQ(3600000u, Dur("1h"));
    EXPECT_EQ(0u, Dur("0"));
}

TEST(DurationParse, PlainNumber_IsSeconds)
{
    EXPECT_EQ(30000u, Dur("30"));
}

TEST(DurationParse, Garbage_Rejected)
{
    const char *bad[] = {"", "s", "30 s", "-1s", "+1s", "1.5s", "30sec",
                         "30S", "10us", "ms", "1d", "0x10"};
    for (const char *s : bad)
        EXPECT_EQ(-EINVAL, DurRc(s)) << "'" << s << "'";
    uint32_t v;
    EXPECT_EQ(-EINVAL, vd_duration_parse(nullptr, &v));
}

TEST(DurationParse, Overflow_Rejected)
{
    EXPECT_EQ(4294967295u, Dur("4294967295ms"));
    EXPECT_EQ(-EINVAL, DurRc("4294967296ms"));
    EXPECT_EQ(-EINVAL, DurRc("4294968s"));
    EXPECT_EQ(-EINVAL, DurRc("99999999999999999999999s"));
}

// ---- names -----------------------------------------------------------------

TEST(NameIsValid, AllowedCharacters_Accepted)
{
    EXPECT_TRUE(vd_name_is_valid("pool0"));
    EXPECT_TRUE(vd_name_is_valid("a"));
    EXPECT_TRUE(vd_name_is_valid("A_b.c-d9"));
    EXPECT_TRUE(vd_name_is_valid("_x"));
    EXPECT_TRUE(vd_name_is_valid(std::string(63, 'n').c_str()));
}

TEST(NameIsValid, BadNames_Rejected)
{
    EXPECT_FALSE(vd_name_is_valid(nullptr));
    EXPECT_FALSE(vd_name_is_valid(""));
    EXPECT_FALSE(vd_name_is_valid(std::string(64, 'n').c_str()));
    EXPECT_FALSE(vd_name_is_valid(".hidden"));
    EXPECT_FALSE(vd_name_is_valid("."));
    EXPECT_FALSE(vd_name_is_valid(".."));
    EXPECT_FALSE(vd_name_is_valid("-opt"));
    EXPECT_FALSE(vd_name_is_valid("a/b"));
    EXPECT_FALSE(vd_name_is_valid("a b"));
    EXPECT_FALSE(vd_name_is_valid("a:b"));
    EXPECT_FALSE(vd_name_is_valid("p\xc3\xa9"));
}

// ---- valid definitions -------------------------------------------------------

TEST(ConfParse, FullExample_AllFieldsSet)
{
    ParseResult r = Parse(kFullExample);
    ASSERT_EQ(0, r.rc) << r.err;
    ASSERT_NE(nullptr, r.conf);
    vd_conf_pool *c = r.conf;
    EXPECT_STREQ("t.yaml", c->file);
    EXPECT_STREQ("pool0", c->name);
    EXPECT_EQ(8ull << 20, c->extent_size);
    ASSERT_EQ(2u, c->ndevs);

    const vd_conf_dev *d = &c->devs[0];
    EXPECT_STREQ("d0", d->name);
    EXPECT_STREQ("/var/lib/vdlvm/d0.img", d->path);
    EXPECT_EQ(200ull << 20, d->size);
    EXPECT_EQ(nullptr, d->iscsi_url);
    EXPECT_STREQ("nodea", d->node);
    EXPECT_EQ(nullptr, d->chap_user);
    EXPECT_EQ(nullptr, d->chap_secret_file);
    EXPECT_EQ(4, d->line);
    EXPECT_EQ(5, d->column);

    d = &c->devs[1];
    EXPECT_STREQ("b0", d->name);
    EXPECT_EQ(nullptr, d->path);
    EXPECT_EQ(0u, d->size);
    EXPECT_STREQ(
        "iscsi://198.51.100.2:3260/iqn.2026-11.org.example:nodeb/1",
        d->iscsi_url);
    EXPECT_STREQ("nodeb", d->node);
    EXPECT_STREQ("vdlvm", d->chap_user);
    EXPECT_STREQ("/etc/vdlvm/b0.secret", d->chap_secret_file);
    EXPECT_EQ(10000u, d->timeout_ms);
    EXPECT_EQ(8, d->line);
    EXPECT_EQ(5, d->column);
    vd_conf_free(c);
}

TEST(ConfParse, FullExample_RoundTripsThroughYaml)
{
    ParseResult a = Parse(kFullExample);
    ASSERT_EQ(0, a.rc) << a.err;
    std::string y = ToYaml(a.conf);
    ParseResult b = Parse(y, "again.yaml");
    ASSERT_EQ(0, b.rc) << b.err << "\n" << y;
    EXPECT_STREQ("again.yaml", b.conf->file);
    EXPECT_STREQ(a.conf->name, b.conf->name);
    EXPECT_EQ(a.conf->extent_size, b.conf->extent_size);
    ASSERT_EQ(a.conf->ndevs, b.conf->ndevs);
    for (size_t i = 0; i < a.conf->ndevs; i++) {
        const vd_conf_dev *x = &a.conf->devs[i], *z = &b.conf->devs[i];
        EXPECT_EQ(Str(x->name), Str(z->name));
        EXPECT_EQ(Str(x->path), Str(z->path));
        EXPECT_EQ(x->size, z->size);
        EXPECT_EQ(Str(x->iscsi_url), Str(z->iscsi_url));
        EXPECT_EQ(Str(x->node), Str(z->node));
        EXPECT_EQ(Str(x->chap_user), Str(z->chap_user));
        EXPECT_EQ(Str(x->chap_secret_file), Str(z->chap_secret_file));
        EXPECT_EQ(x->timeout_ms, z->timeout_ms);
    }
    vd_conf_free(a.conf);
    vd_conf_free(b.conf);
}

TEST(ConfParse, OptionalKeysOmitted_DefaultsApplied)
{
    ParseResult r = Parse("pool: p\n"
                          "devices:\n"
                          "  - name: d0\n"
                          "    path: /srv/d0.img\n"
                          "  - name: b0\n"
                          "    iscsi: iscsi://Target-Host.example/iqn.2026-11.x:y/0\n");
    ASSERT_EQ(0, r.rc) << r.err;
    vd_conf_pool *c = r.conf;
    EXPECT_EQ(VD_EXTENT_SIZE_DEFAULT, c->extent_size);
    EXPECT_EQ(4ull << 20, c->extent_size);
    ASSERT_EQ(2u, c->ndevs);
    EXPECT_EQ(0u, c->devs[0].size);
    std::string host = Hostname();
    if (vd_name_is_valid(host.c_str())) {
        EXPECT_STREQ(host.c_str(), c->devs[0].node);
    } else {
        EXPECT_TRUE(vd_name_is_valid(c->devs[0].node));
    }
    EXPECT_EQ(30000u, c->devs[1].timeout_ms);
    EXPECT_STREQ("target-host.example", c->devs[1].node);
    EXPECT_EQ(nullptr, c->devs[1].chap_user);
    EXPECT_EQ(nullptr, c->devs[1].chap_secret_file);
    vd_conf_free(c);
}

TEST(ConfParse, UrlWithoutPort_NodeIsHost)
{
    ParseResult r = Parse("pool: p\ndevices:\n  - name: b0\n"
                          "    iscsi: iscsi://198.51.100.7/iqn.2026-11.x:y/3\n");
    ASSERT_EQ(0, r.rc) << r.err;
    EXPECT_STREQ("198.51.100.7", r.conf->devs[0].node);
    EXPECT_STREQ("iscsi://198.51.100.7/iqn.2026-11.x:y/3",
                 r.conf->devs[0].iscsi_url);
    vd_conf_free(r.conf);
}

TEST(ConfParse, FlowStyleAndQuoting_Accepted)
{
    ParseResult r = Parse("{pool: \"p1\", extent_size: '1MiB', devices: "
                          "[{name: a, path: '/x y/a.img', size: 1.5GiB}]}");
    ASSERT_EQ(0, r.rc) << r.err;
    EXPECT_STREQ("p1", r.conf->name);
    EXPECT_EQ(1ull << 20, r.conf->extent_size);
    EXPECT_STREQ("/x y/a.img", r.conf->devs[0].path);
    EXPECT_EQ(3ull << 29, r.conf->devs[0].size);
    vd_conf_free(r.conf);
}

TEST(ConfParse, NumericLookingName_KeptAsText)
{
    ParseResult r = Parse("pool: 007\ndevices:\n  - name: 1e3\n    path: /a\n");
    ASSERT_EQ(0, r.rc) << r.err;
    EXPECT_STREQ("007", r.conf->name);
    EXPECT_STREQ("1e3", r.conf->devs[0].name);
    vd_conf_free(r.conf);
}

TEST(ConfParse, ErrorBufferTooSmall_Truncated)
{
    char err[8];
    vd_conf_pool *conf = nullptr;
    const char y[] = "pool: p\nfrob: 1\n";
    EXPECT_EQ(-EINVAL, vd_conf_parse("t.yaml", y, strlen(y), &conf, err,
                                     sizeof(err)));
    EXPECT_STREQ("t.yaml:", err);
    EXPECT_EQ(nullptr, conf);
    EXPECT_EQ(-EINVAL, vd_conf_parse("t.yaml", y, strlen(y), &conf, nullptr,
                                     0));
}

TEST(ConfFree, Null_Ignored)
{
    vd_conf_free(nullptr);
}

// ---- errors: YAML and structure ------------------------------------------------

TEST(ConfParse, SyntaxError_LibyamlProblemAtItsMark)
{
    EXPECT_TRUE(ParseFails("pool: a\n  b: c\n", "t.yaml:2:4: ",
                           "invalid YAML: mapping values are not allowed in "
                           "this context"));
    EXPECT_TRUE(ParseFails("pool: [a\n", "t.yaml:2:1: ",
                           "did not find expected ',' or ']'"));
    EXPECT_TRUE(ParseFails("pool: \"a\n", "t.yaml:2:1: ",
                           "found unexpected end of stream"));
    EXPECT_TRUE(ParseFails("pool: *nope\n", "t.yaml:1:7: ",
                           "found undefined alias"));
}

TEST(ConfParse, InvalidUtf8_LineAndColumnOfTheByte)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices: \xff\n", "t.yaml:2:10: ",
                           "invalid YAML: invalid leading UTF-8 octet"));
}

TEST(ConfParse, EmptyFile_Rejected)
{
    EXPECT_TRUE(ParseFails("", "t.yaml:1:1: ", "the file is empty"));
    EXPECT_TRUE(ParseFails("# nothing\n", "t.yaml:1:1: ", "the file is empty"));
}

TEST(ConfParse, TopLevelNotMapping_Rejected)
{
    EXPECT_TRUE(ParseFails("- pool: p\n", "t.yaml:1:1: ",
                           "the top level must be a mapping with keys pool, "
                           "extent_size, devices, not a sequence"));
    EXPECT_TRUE(ParseFails("\n  pool0\n", "t.yaml:2:3: ",
                           "top level must be a mapping"));
}

TEST(ConfParse, SecondDocument_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\n---\npool: q\n", "t.yaml:2:1: ",
                           "a second YAML document"));
}

TEST(ConfParse, UnknownTopKey_NamedWithAllowedKeys)
{
    EXPECT_TRUE(ParseFails("pool: p\nextentsize: 4MiB\n", "t.yaml:2:1: ",
                           "unknown key 'extentsize'; allowed keys: pool, "
                           "extent_size, devices"));
}

TEST(ConfParse, UnknownDeviceKey_NamedWithAllowedKeys)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    sise: 1M\n",
                           "t.yaml:5:5: ",
                           "device 'd0': unknown key 'sise'; allowed keys: "
                           "name, path, size, node, iscsi, chap, timeout"));
}

TEST(ConfParse, UnknownChapKey_NamedWithAllowedKeys)
{
    EXPECT_TRUE(ParseFails(
        "pool: p\ndevices:\n  - name: b0\n    iscsi: iscsi://h/iqn.a:b/1\n"
        "    chap: {user: u, secret: s}\n",
        "t.yaml:5:21: ",
        "unknown key 'secret'; allowed keys: user, secret_file"));
}

TEST(ConfParse, UnknownKeyWithControlCharacters_ShownSafely)
{
    EXPECT_TRUE(ParseFails("pool: p\n\"a\\nb\": 1\n", "t.yaml:2:1: ",
                           "unknown key 'a?b'"));
}

TEST(ConfParse, NonScalarKey_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\n? [a]\n: 1\n", "t.yaml:2:3: ",
                           "a key must be a scalar, not a sequence"));
}

TEST(ConfParse, DevicesNotSequence_WrongType)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices: {name: d0}\n", "t.yaml:2:10: ",
                           "devices must be a sequence of device mappings, "
                           "not a mapping"));
    EXPECT_TRUE(ParseFails("pool: p\ndevices: d0\n", "t.yaml:2:10: ",
                           "not a scalar"));
}

TEST(ConfParse, NameNotScalar_WrongType)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: [d0]\n    path: /a\n",
                           "t.yaml:3:11: ",
                           "device 1: name must be a scalar, not a sequence"));
    EXPECT_TRUE(ParseFails("pool: {a: b}\n", "t.yaml:1:7: ",
                           "pool must be a scalar, not a mapping"));
}

TEST(ConfParse, DeviceNotMapping_WrongType)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - d0\n", "t.yaml:3:5: ",
                           "device 1: must be a mapping with keys name, path"));
}

TEST(ConfParse, ChapNotMapping_WrongType)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: b0\n"
                           "    iscsi: iscsi://h/iqn.a:b/1\n    chap: vdlvm\n",
                           "t.yaml:5:11: ",
                           "device 'b0': chap must be a mapping, not a "
                           "scalar"));
}

TEST(ConfParse, KeyWithoutValue_Rejected)
{
    EXPECT_TRUE(ParseFails("pool:\ndevices: []\n", "t.yaml:1:1: ",
                           "pool has no value"));
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n", "t.yaml:2:1: ",
                           "devices has no value; list at least one device"));
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d\n    path: ~\n",
                           "t.yaml:4:5: ", "device 'd': path has no value"));
}

// ---- errors: missing and conflicting keys ----------------------------------------

TEST(ConfParse, MissingPool_Rejected)
{
    EXPECT_TRUE(ParseFails("devices:\n  - name: d0\n    path: /a\n",
                           "t.yaml:1:1: ", "missing required key 'pool'"));
}

TEST(ConfParse, MissingDevices_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\n", "t.yaml:1:1: ",
                           "missing required key 'devices'"));
}

TEST(ConfParse, MissingDeviceName_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "  - path: /b\n",
                           "t.yaml:5:5: ",
                           "device 2: missing required key 'name'"));
}

TEST(ConfParse, NeitherPathNorIscsi_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    node: n\n",
                           "t.yaml:3:5: ",
                           "device 'd0': missing required key 'path' or "
                           "'iscsi'"));
}

TEST(ConfParse, BothPathAndIscsi_RejectedAtSecond)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    iscsi: iscsi://h/iqn.a:b/1\n",
                           "t.yaml:5:5: ",
                           "device 'd0': has both path and iscsi"));
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n"
                           "    iscsi: iscsi://h/iqn.a:b/1\n    path: /a\n",
                           "t.yaml:5:5: ", "has both path and iscsi"));
}

TEST(ConfParse, SizeOnIscsiDevice_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: b0\n"
                           "    size: 1GiB\n    iscsi: iscsi://h/iqn.a:b/1\n",
                           "t.yaml:4:5: ",
                           "device 'b0': size is only valid for a local "
                           "device"));
}

TEST(ConfParse, ChapOnLocalDevice_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    chap: {user: u, secret_file: /s}\n",
                           "t.yaml:5:5: ",
                           "device 'd0': chap is only valid for an iscsi "
                           "device"));
}

TEST(ConfParse, TimeoutOnLocalDevice_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    timeout: 5s\n",
                           "t.yaml:5:5: ",
                           "device 'd0': timeout is only valid for an iscsi "
                           "device"));
}

TEST(ConfParse, ChapMissingSecretFile_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: b0\n"
                           "    iscsi: iscsi://h/iqn.a:b/1\n"
                           "    chap: {user: u}\n",
                           "t.yaml:5:11: ",
                           "missing required key 'secret_file'"));
}

TEST(ConfParse, ChapRelativeSecretFile_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: b0\n"
                           "    iscsi: iscsi://h/iqn.a:b/1\n"
                           "    chap: {user: u, secret_file: b0.secret}\n",
                           "t.yaml:5:34: ", "is not an absolute path"));
}

// ---- errors: values ---------------------------------------------------------------

TEST(ConfParse, BadSizeSyntax_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    size: 200MB\n",
                           "t.yaml:5:11: ",
                           "device 'd0': size '200MB' is not a size; use a "
                           "whole number of bytes or a number with a unit"));
    EXPECT_TRUE(ParseFails("pool: p\nextent_size: -4MiB\n", "t.yaml:2:14: ",
                           "extent_size '-4MiB' is not a size"));
}

TEST(ConfParse, SizeOverflow_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    size: 16777216TiB\n",
                           "t.yaml:5:11: ", "is too large"));
}

TEST(ConfParse, ZeroSize_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    size: 0\n",
                           "t.yaml:5:11: ", "size must be greater than 0"));
}

TEST(ConfParse, ExtentSizeNotPowerOfTwo_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\nextent_size: 3MiB\n", "t.yaml:2:14: ",
                           "extent_size 3MiB is not a power of two"));
    EXPECT_TRUE(ParseFails("pool: p\nextent_size: 0\n", "t.yaml:2:14: ",
                           "is not a power of two"));
}

TEST(ConfParse, ExtentSizeBelowOneMiB_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\nextent_size: 512KiB\n", "t.yaml:2:14: ",
                           "extent_size 512KiB is less than 1MiB"));
}

TEST(ConfParse, InvalidPoolName_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: -p\n", "t.yaml:1:7: ",
                           "invalid pool name '-p'; use 1-63 characters"));
    EXPECT_TRUE(ParseFails("pool: \"\"\n", "t.yaml:1:7: ",
                           "invalid pool name ''"));
    EXPECT_TRUE(ParseFails("pool: " + std::string(64, 'a') + "\n",
                           "t.yaml:1:7: ", "invalid pool name"));
}

TEST(ConfParse, InvalidDeviceName_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d/0\n    path: /a\n",
                           "t.yaml:3:11: ", "device 1: invalid name 'd/0'"));
}

TEST(ConfParse, InvalidNodeName_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    node: node a\n",
                           "t.yaml:5:11: ",
                           "device 'd0': invalid node name 'node a'"));
}

TEST(ConfParse, NulInValue_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n"
                           "    path: \"/a\\0b\"\n",
                           "t.yaml:4:11: ", "contains a NUL character"));
}

TEST(ConfParse, RelativePath_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: d0.img\n",
                           "t.yaml:4:11: ",
                           "device 'd0': path 'd0.img' is not an absolute "
                           "path"));
}

TEST(ConfParse, BadTimeout_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: b0\n"
                           "    iscsi: iscsi://h/iqn.a:b/1\n    timeout: 5sec\n",
                           "t.yaml:5:14: ", "device 'b0': bad timeout '5sec'"));
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: b0\n"
                           "    iscsi: iscsi://h/iqn.a:b/1\n    timeout: 0s\n",
                           "t.yaml:5:14: ", "timeout must be greater than 0"));
}

TEST(ConfParse, EmptyDeviceList_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices: []\n", "t.yaml:2:10: ",
                           "devices is empty; list at least one device"));
}

TEST(ConfParse, BadIscsiUrl_Rejected)
{
    struct {
        const char *url, *why;
    } cases[] = {
        {"http://h/iqn.a:b/1", "it does not start with iscsi://"},
        {"iscsi://h", "no target"},
        {"iscsi:///iqn.a:b/1", "no host"},
        {"iscsi://h:/iqn.a:b/1", "bad port"},
        {"iscsi://h:32x/iqn.a:b/1", "bad port"},
        {"iscsi://h:0/iqn.a:b/1", "port out of range"},
        {"iscsi://h:65536/iqn.a:b/1", "port out of range"},
        {"iscsi://h/iqn.a:b", "no target name or no LUN"},
        {"iscsi://h//1", "no target name or no LUN"},
        {"iscsi://h/target/1", "the target name must start with iqn., eui. or naa."},
        {"iscsi://h/iqn.a:b/", "the LUN must be a number"},
        {"iscsi://h/iqn.a:b/x", "the LUN must be a number"},
        {"iscsi://h/iqn.a:b/1/2", "unexpected text after the LUN"},
        {"iscsi://h/iqn.a:b/16384", "LUN out of range"},
        {"iscsi://u%p@h/iqn.a:b/1", "credentials do not belong in the URL, use chap"},
        {"iscsi://[::1/iqn.a:b/1", "unterminated IPv6 address"},
        {"iscsi://h!/iqn.a:b/1", "bad character in host"},
    };
    for (auto &tc : cases) {
        std::string y = std::string("pool: p\ndevices:\n  - name: b0\n"
                                    "    iscsi: \"") +
                        tc.url + "\"\n";
        EXPECT_TRUE(ParseFails(y, "t.yaml:4:12: ",
                               std::string("device 'b0': bad iscsi URL '") +
                                   tc.url + "': " + tc.why))
            << tc.url;
    }
}

TEST(ConfParse, Ipv6UrlWithoutNode_AsksForNode)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: b0\n"
                           "    iscsi: iscsi://[2001:db8::1]:3260/iqn.a:b/0\n",
                           "t.yaml:4:12: ",
                           "host '2001:db8::1' of the URL is not a valid "
                           "node name; add node: NAME"));
    ParseResult r = Parse("pool: p\ndevices:\n  - name: b0\n"
                          "    iscsi: iscsi://[2001:db8::1]:3260/iqn.a:b/0\n"
                          "    node: nb\n");
    ASSERT_EQ(0, r.rc) << r.err;
    EXPECT_STREQ("nb", r.conf->devs[0].node);
    vd_conf_free(r.conf);
}

// ---- errors: duplicates -----------------------------------------------------------

TEST(ConfParse, DuplicateTopKey_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices: []\npool: q\n", "t.yaml:3:1: ",
                           "duplicate key 'pool' (first at line 1, column 1)"));
}

TEST(ConfParse, DuplicateDeviceKey_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "    path: /b\n",
                           "t.yaml:5:5: ",
                           "device 'd0': duplicate key 'path' (first at line "
                           "4, column 5)"));
}

TEST(ConfParse, DuplicateDeviceName_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - name: d0\n    path: /a\n"
                           "  - name: d0\n    path: /b\n",
                           "t.yaml:5:11: ",
                           "duplicate device name 'd0' (first at line 3)"));
}

TEST(ConfParse, SameLiteralPathTwice_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n"
                           "  - name: d0\n    path: /nonexistent/vd/a.img\n"
                           "  - name: d1\n    path: /nonexistent/vd/a.img\n",
                           "t.yaml:6:11: ",
                           "device 'd1': same device as device 'd0' (line 4)"));
}

TEST(ConfParse, SameFileThroughSymlink_Rejected)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string file = dir.Write("a.img", "x");
    std::string link = dir.Add("link.img");
    ASSERT_EQ(0, symlink(file.c_str(), link.c_str()));
    std::string dotted = dir.path() + "/./a.img";
    std::string y = "pool: p\ndevices:\n  - name: d0\n    path: " + file +
                    "\n  - name: d1\n    path: " + link + "\n";
    EXPECT_TRUE(ParseFails(y, "t.yaml:6:11: ",
                           "device 'd1': same device as device 'd0'"));
    y = "pool: p\ndevices:\n  - name: d0\n    path: " + file +
        "\n  - name: d1\n    path: " + dotted + "\n";
    EXPECT_TRUE(ParseFails(y, "t.yaml:6:11: ", "same device as device 'd0'"));
}

// Issue 18 item 3: a file to be created, listed twice through ".." (and
// through a symlinked directory), was only caught by the open at create
// time ("File exists", no FILE:LINE).
TEST(ConfParse, SameNewFileThroughDotDot_Rejected)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string base = dir.path().substr(dir.path().rfind('/') + 1);
    std::string a = dir.path() + "/y0.img";
    std::string b = dir.path() + "/../" + base + "/y0.img";
    std::string y = "pool: p\ndevices:\n  - name: x0\n    path: " + a +
                    "\n    size: 64MiB\n  - name: x1\n    path: " + b +
                    "\n    size: 64MiB\n";
    EXPECT_TRUE(ParseFails(y, "t.yaml:7:11: ",
                           "device 'x1': same device as device 'x0' (line 4)"));
    std::string link = dir.Add("ln");
    ASSERT_EQ(0, symlink(dir.path().c_str(), link.c_str()));
    y = "pool: p\ndevices:\n  - name: x0\n    path: " + a +
        "\n    size: 64MiB\n  - name: x1\n    path: " + link +
        "/./y0.img\n    size: 64MiB\n";
    EXPECT_TRUE(ParseFails(y, "t.yaml:7:11: ", "same device as device 'x0'"));
    // distinct new files in the same directory stay distinct
    y = "pool: p\ndevices:\n  - name: x0\n    path: " + a +
        "\n    size: 64MiB\n  - name: x1\n    path: " + dir.path() +
        "/nx/../y1.img\n    size: 64MiB\n";
    ParseResult r = Parse(y);
    EXPECT_EQ(0, r.rc) << r.err;
    vd_conf_free(r.conf);
    EXPECT_NE(0, access(a.c_str(), F_OK)); // nothing created
}

TEST(ConfParse, SameFileThroughHardLink_Rejected)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string file = dir.Write("a.img", "x");
    std::string hard = dir.Add("b.img");
    ASSERT_EQ(0, link(file.c_str(), hard.c_str()));
    std::string y = "pool: p\ndevices:\n  - name: d0\n    path: " + file +
                    "\n  - name: d1\n    path: " + hard + "\n";
    EXPECT_TRUE(ParseFails(y, "t.yaml:6:11: ", "same device as device 'd0'"));
}

TEST(ConfParse, DistinctFiles_Accepted)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string a = dir.Write("a.img", "x");
    std::string b = dir.Write("b.img", "y");
    std::string y = "pool: p\ndevices:\n  - name: d0\n    path: " + a +
                    "\n  - name: d1\n    path: " + b +
                    "\n  - name: d2\n    path: " + dir.path() + "/new.img" +
                    "\n    size: 1GiB\n";
    ParseResult r = Parse(y);
    ASSERT_EQ(0, r.rc) << r.err;
    ASSERT_EQ(3u, r.conf->ndevs);
    EXPECT_EQ(a, r.conf->devs[0].path);  // stored as written
    vd_conf_free(r.conf);
}

TEST(ConfParse, SameIscsiUrlTwice_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n"
                           "  - name: b0\n    iscsi: iscsi://h/iqn.a:b/1\n"
                           "  - name: b1\n    iscsi: iscsi://h/iqn.a:b/1\n",
                           "t.yaml:6:12: ",
                           "device 'b1': same device as device 'b0' (line 4)"));
}

TEST(ConfParse, SameIscsiLunWrittenDifferently_Rejected)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n"
                           "  - name: b0\n    iscsi: iscsi://H.example/iqn.a:b/1\n"
                           "  - name: b1\n"
                           "    iscsi: iscsi://h.example:3260/iqn.a:b/01\n",
                           "t.yaml:6:12: ", "same device as device 'b0'"));
}

TEST(ConfParse, SameTargetOtherLun_Accepted)
{
    ParseResult r = Parse("pool: p\ndevices:\n"
                          "  - name: b0\n    iscsi: iscsi://h/iqn.a:b/1\n"
                          "  - name: b1\n    iscsi: iscsi://h/iqn.a:b/2\n"
                          "  - name: b2\n    iscsi: iscsi://h:3261/iqn.a:b/1\n");
    ASSERT_EQ(0, r.rc) << r.err;
    EXPECT_EQ(3u, r.conf->ndevs);
    vd_conf_free(r.conf);
}

TEST(ConfParse, AliasedDevice_ReportedAsDuplicateName)
{
    EXPECT_TRUE(ParseFails("pool: p\ndevices:\n  - &d {name: d0, path: /a}\n"
                           "  - *d\n",
                           "t.yaml:3:15: ", "duplicate device name 'd0'"));
}

// ---- loading from a file -----------------------------------------------------------

TEST(ConfLoad, ValidFile_ParsedWithItsPath)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string p = dir.Write("pool0.yaml", kFullExample);
    vd_conf_pool *conf = nullptr;
    char err[512] = "";
    ASSERT_EQ(0, vd_conf_load(p.c_str(), &conf, err, sizeof(err))) << err;
    EXPECT_EQ(p, conf->file);
    EXPECT_STREQ("pool0", conf->name);
    EXPECT_EQ(2u, conf->ndevs);
    vd_conf_free(conf);
}

TEST(ConfLoad, BadFile_MessageNamesTheFile)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string p = dir.Write("bad.yaml", "pool: p\ndevices:\n  - name: d0\n"
                                          "    path: /a\n    sise: 1\n");
    vd_conf_pool *conf = nullptr;
    char err[512] = "";
    EXPECT_EQ(-EINVAL, vd_conf_load(p.c_str(), &conf, err, sizeof(err)));
    EXPECT_EQ(nullptr, conf);
    EXPECT_EQ(0u, std::string(err).rfind(p + ":5:5: ", 0)) << err;
}

TEST(ConfLoad, MissingFile_FileAndCause)
{
    vd_conf_pool *conf = nullptr;
    char err[512] = "";
    EXPECT_EQ(-ENOENT, vd_conf_load("/nonexistent/vdlvm/pool.yaml", &conf, err,
                                    sizeof(err)));
    EXPECT_EQ(nullptr, conf);
    EXPECT_STREQ("/nonexistent/vdlvm/pool.yaml: No such file or directory",
                 err);
}

TEST(ConfLoad, Directory_FileAndCause)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    vd_conf_pool *conf = nullptr;
    char err[512] = "";
    EXPECT_EQ(-EISDIR, vd_conf_load(dir.path().c_str(), &conf, err,
                                    sizeof(err)));
    EXPECT_EQ(nullptr, conf);
    EXPECT_EQ(dir.path() + ": Is a directory", err);
}

TEST(ConfLoad, HugeFile_Rejected)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string p = dir.Write("big.yaml", "pool: p\n" +
                                              std::string(2 << 20, '#') + "\n");
    vd_conf_pool *conf = nullptr;
    char err[512] = "";
    EXPECT_EQ(-EFBIG, vd_conf_load(p.c_str(), &conf, err, sizeof(err)));
    EXPECT_EQ(nullptr, conf);
    EXPECT_EQ(0u, std::string(err).rfind(p + ": larger than", 0)) << err;
}

TEST(ConfLoad, EmptyFile_Rejected)
{
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string p = dir.Write("empty.yaml", "");
    vd_conf_pool *conf = nullptr;
    char err[512] = "";
    EXPECT_EQ(-EINVAL, vd_conf_load(p.c_str(), &conf, err, sizeof(err)));
    EXPECT_EQ(p + ":1:1: the file is empty; expected a mapping with keys "
                  "pool, extent_size, devices",
              err);
}

}  // namespace
