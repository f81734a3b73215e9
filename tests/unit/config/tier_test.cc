// Unit tests for tiering in the pool definition (config/config.c): `tier:`
// per device (slow by default, fast or slow) and the pool's `tiering:`
// section (enabled, interval, rate, fast_free; defaults; off when absent);
// bad input refused with FILE:LINE:COL and nothing returned.
#include <gtest/gtest.h>

#include <errno.h>
#include <string.h>

#include <string>

#include "config/vdconfig.h"

namespace
{

const char kHead[] = "pool: p\n";
const char kDevs[] = "devices:\n"
                     "  - name: f0\n    path: /tmp/vdlvm-tier-f0.img\n"
                     "    size: 64MiB\n    tier: fast\n"
                     "  - name: s0\n    path: /tmp/vdlvm-tier-s0.img\n"
                     "    size: 64MiB\n";

int Parse(const std::string &yaml, vd_conf_pool **out, std::string *err)
{
    char buf[1024] = "";
    int rc = vd_conf_parse("t.yaml", yaml.data(), yaml.size(), out, buf,
                           sizeof(buf));
    *err = buf;
    return rc;
}

::testing::AssertionResult Fails(const std::string &yaml,
                                 const std::string &prefix,
                                 const std::string &what)
{
    vd_conf_pool sentinel{};
    vd_conf_pool *conf = &sentinel;
    std::string e;
    int rc = Parse(yaml, &conf, &e);
    if (rc != -EINVAL)
        return ::testing::AssertionFailure() << "rc " << rc << ", err " << e;
    if (conf != &sentinel)
        return ::testing::AssertionFailure() << "*out was changed on error";
    if (e.rfind(prefix, 0) != 0 || e.find(what) == std::string::npos)
        return ::testing::AssertionFailure() << "message: " << e;
    return ::testing::AssertionSuccess();
}

TEST(TierConfig, DeviceTier_FastGivenSlowDefault)
{
    vd_conf_pool *c = nullptr;
    std::string e;
    ASSERT_EQ(Parse(std::string(kHead) + kDevs, &c, &e), 0) << e;
    ASSERT_EQ(c->ndevs, 2u);
    EXPECT_EQ(c->devs[0].tier, (uint32_t)VD_CONF_TIER_FAST);
    EXPECT_EQ(c->devs[1].tier, (uint32_t)VD_CONF_TIER_SLOW);
    // no tiering: section: passes off, defaults filled
    EXPECT_EQ(c->tiering.given, 0);
    EXPECT_EQ(c->tiering.enabled, 0);
    EXPECT_EQ(c->tiering.interval_ms, 60000u);
    EXPECT_EQ(c->tiering.rate, 64ull << 20);
    EXPECT_EQ(c->tiering.fast_free_pct, 10u);
    vd_conf_free(c);
}

TEST(TierConfig, DeviceTier_UnknownName_RefusedWithLine)
{
    std::string y = std::string(kHead) +
                    "devices:\n  - name: d0\n    path: /tmp/x.img\n"
                    "    size: 64MiB\n    tier: medium\n";
    EXPECT_TRUE(
        Fails(y, "t.yaml:6:11:", "unknown tier 'medium'; use fast or slow"));
    y = std::string(kHead) +
        "devices:\n  - name: d0\n    path: /tmp/x.img\n    size: 64MiB\n"
        "    tier: [fast]\n";
    EXPECT_TRUE(Fails(y, "t.yaml:6:11:", "tier must be a scalar"));
}

TEST(TierConfig, Section_AllKeys_Parsed)
{
    vd_conf_pool *c = nullptr;
    std::string e;
    std::string y = std::string(kHead) +
                    "tiering:\n  enabled: false\n  interval: 5m\n"
                    "  rate: 10MiB\n  fast_free: 25%\n" +
                    kDevs;
    ASSERT_EQ(Parse(y, &c, &e), 0) << e;
    EXPECT_EQ(c->tiering.given, 1);
    EXPECT_EQ(c->tiering.enabled, 0);
    EXPECT_EQ(c->tiering.interval_ms, 300000u);
    EXPECT_EQ(c->tiering.rate, 10ull << 20);
    EXPECT_EQ(c->tiering.fast_free_pct, 25u);
    vd_conf_free(c);
}

TEST(TierConfig, Section_Given_EnabledByDefault)
{
    vd_conf_pool *c = nullptr;
    std::string e;
    std::string y = std::string(kHead) + "tiering:\n  fast_free: 0\n" + kDevs;
    ASSERT_EQ(Parse(y, &c, &e), 0) << e;
    EXPECT_EQ(c->tiering.enabled, 1);
    EXPECT_EQ(c->tiering.fast_free_pct, 0u);
    EXPECT_EQ(c->tiering.interval_ms, 60000u);
    vd_conf_free(c);
}

TEST(TierConfig, Section_BadValues_RefusedWithLine)
{
    std::string h = std::string(kHead) + "tiering:\n";
    EXPECT_TRUE(Fails(h + "  interval: soon\n" + kDevs,
                      "t.yaml:3:13:", "interval 'soon' is not a duration"));
    EXPECT_TRUE(Fails(h + "  interval: 500ms\n" + kDevs,
                      "t.yaml:3:13:", "of at least 1s"));
    EXPECT_TRUE(Fails(h + "  fast_free: 95%\n" + kDevs, "t.yaml:3:14:",
                      "fast_free '95%' is not a percentage from 0% to 90%"));
    EXPECT_TRUE(Fails(h + "  fast_free: 10 %\n" + kDevs,
                      "t.yaml:3:14:", "is not a percentage"));
    EXPECT_TRUE(Fails(h + "  enabled: maybe\n" + kDevs,
                      "t.yaml:3:12:", "enabled 'maybe' is not a boolean"));
    EXPECT_TRUE(Fails(h + "  rate: fast\n" + kDevs,
                      "t.yaml:3:9:", "tiering: rate 'fast' is not a size"));
    EXPECT_TRUE(Fails(h + "  speed: 1\n" + kDevs, "t.yaml:3:3:",
                      "unknown key 'speed'; allowed keys: enabled, interval"));
    EXPECT_TRUE(Fails(std::string(kHead) + "tiering: on\n" + kDevs,
                      "t.yaml:2:10:", "tiering must be a mapping"));
}

} // namespace
