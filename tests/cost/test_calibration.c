/*
 * Guards the calibration-table format (cost_model/FORMAT.md): every built-in default
 * round-trips exactly through fg_calibration_write/load; the shipped tables load and are
 * marked as they claim; each kind of malformed, truncated or absurd table is refused
 * with FG_ERR_CALIBRATION and a message naming the file and the right line; random bytes,
 * truncations and byte flips never crash the reader nor yield out-of-bounds values; and
 * fg_calibration_find picks tables by arch and nearest unit count, deterministically.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "calibration.h"
#include "cost_model.h"

static char g_dir[256];

static int make_dir(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/fg_calib_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

static void write_text(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

static char *read_text(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(65536);
    *n = fread(buf, 1, 65535, f);
    buf[*n] = '\0';
    fclose(f);
    return buf;
}

static const char *const k_archs[] = {"cpu", "sm_80", "sm_90", "gfx908", "gfx90a", "gfx942", "unknown_gpu"};

static void same_params(const fg_cost_params *a, const fg_cost_params *b) {
    assert_string_equal(a->arch, b->arch);
    assert_string_equal(a->device, b->device);
    assert_int_equal(a->measured, b->measured);
    assert_int_equal(a->compute_units, b->compute_units);
    assert_int_equal(a->blocks_per_unit, b->blocks_per_unit);
    assert_int_equal(a->warp_size, b->warp_size);
    assert_true(a->copy_gbs == b->copy_gbs);
    assert_true(a->gather_eff == b->gather_eff);
    assert_true(a->mma_tflops_f16 == b->mma_tflops_f16);
    assert_true(a->fma_tflops_f32 == b->fma_tflops_f32);
    assert_true(a->task_fixed_us == b->task_fixed_us);
    assert_true(a->launch_us == b->launch_us);
    assert_true(a->merge_us_per_row == b->merge_us_per_row);
    assert_int_equal(a->tile_kv, b->tile_kv);
    assert_int_equal(a->tile_rows, b->tile_rows);
    assert_int_equal(a->pad_rows, b->pad_rows);
    assert_int_equal(a->pad_kv, b->pad_kv);
}

static void test_round_trip(void **state) {
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/rt.txt", g_dir);
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++) {
        fg_cost_params p, q;
        fg_cost_defaults(k_archs[i], i == 0 ? 3 : 0, 0, &p);
        p.measured = (int32_t)(i % 2);
        p.copy_gbs *= 1.0 / 3.0; /* a value that needs all 17 digits */
        assert_int_equal(fg_calibration_write(path, &p, "2026-01-02", "unit test\nwith a newline"), FG_SUCCESS);
        memset(&q, 0x55, sizeof q);
        if (fg_calibration_load(path, &q) != FG_SUCCESS) fail_msg("%s: %s", k_archs[i], fg_last_error());
        same_params(&p, &q);
    }
}

static void test_shipped_tables(void **state) {
    (void)state;
    static const struct { const char *arch; int32_t units; } t[] = {
        {"sm_90", 132}, {"sm_80", 108}, {"gfx90a", 110}, {"gfx942", 304}, {"gfx908", 120}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char path[512];
        assert_int_equal(fg_calibration_find(FG_TEST_COST_MODEL_DIR, t[i].arch, t[i].units, path, sizeof path), 1);
        fg_cost_params p;
        if (fg_calibration_load(path, &p) != FG_SUCCESS) fail_msg("%s: %s", path, fg_last_error());
        assert_string_equal(p.arch, t[i].arch);
        assert_int_equal(p.compute_units, t[i].units);
        /* Every shipped table says how it was made (FORMAT.md): the H100 one was measured by
         * forgeattn-calibrate on the device; the others are estimates from datasheets. */
        size_t n;
        char *text = read_text(path, &n);
        if (!strcmp(t[i].arch, "sm_90")) {
            assert_int_equal(p.measured, 1);
            assert_non_null(strstr(text, "kind = measured"));
            assert_non_null(strstr(text, "source = forgeattn-calibrate"));
        } else {
            assert_int_equal(p.measured, 0);
            assert_non_null(strstr(text, "kind = estimated"));
            assert_non_null(strstr(text, "source = ESTIMATED"));
        }
        free(text);
    }
}

typedef struct bad_case {
    const char *what;
    const char *find;    /* line to change (prefix match), NULL = append */
    const char *replace; /* replacement line, NULL = delete the line */
    int line;            /* expected line in the message; 0 = the last line */
    const char *says;    /* expected words in the message */
} bad_case;

static const bad_case k_bad[] = {
    {"wrong magic", "forgeattn-calibration 1", "forgeattn-calib 1", 1, "expected"},
    {"wrong version", "forgeattn-calibration 1", "forgeattn-calibration 2", 1, "format version 2"},
    {"unknown key", "launch_us", "launch_ms = 3", 17, "unknown key"},
    {"duplicate key", "tile_rows", "tile_kv = 64", 20, "duplicate key"},
    {"missing key", "gather_eff", NULL, 0, "missing key 'gather_eff'"},
    {"negative bandwidth", "copy_gbs", "copy_gbs = -2850", 12, "outside"},
    {"zero bandwidth", "copy_gbs", "copy_gbs = 0", 12, "outside"},
    {"huge number", "mma_tflops_f16", "mma_tflops_f16 = 1e300", 14, "outside"},
    {"overflowing number", "mma_tflops_f16", "mma_tflops_f16 = 1e999", 14, "not a finite number"},
    {"not a number", "launch_us", "launch_us = fast", 17, "not a finite number"},
    {"nan", "launch_us", "launch_us = nan", 17, "not a finite number"},
    {"trailing junk", "copy_gbs", "copy_gbs = 2850GB/s", 12, "not a finite number"},
    {"fraction as count", "compute_units", "compute_units = 132.5", 6, "whole number"},
    {"efficiency above 1", "gather_eff", "gather_eff = 1.5", 13, "outside"},
    {"empty value", "device", "device =", 4, "empty value"},
    {"no equals sign", "warp_size", "warp_size 32", 11, "key = value"},
    {"bad date", "date", "date = yesterday", 7, "YYYY-MM-DD"},
    {"bad kind", "kind", "kind = guessed", 8, "measured"},
    {"bad arch", "arch", "arch = sm 90", 5, "letters"},
    {"bad library version", "library", "library = latest", 3, "MAJOR.MINOR.PATCH"},
    {"text after end", NULL, "copy_gbs = 1", 0, "after 'end'"},
    {"truncated (no end)", "end", NULL, 0, "no 'end'"},
    {"pad larger than tile", "pad_kv", "pad_kv = 128", 22, "exceed"},
    {"fma above 4x matrix", "fma_tflops_f32", "fma_tflops_f32 = 9000", 15, "absurd"},
};

/* The reference table for the malformed cases: sm_90 defaults, line numbers fixed by
 * fg_calibration_write's layout (line 1 magic, 2 comment, 3 library, ...). */
static char *reference(size_t *n) {
    char path[300];
    snprintf(path, sizeof path, "%s/ref.txt", g_dir);
    fg_cost_params p;
    fg_cost_defaults("sm_90", 132, 32, &p);
    assert_int_equal(fg_calibration_write(path, &p, "2026-01-02", "unit test"), FG_SUCCESS);
    return read_text(path, n);
}

static void test_malformed(void **state) {
    (void)state;
    size_t n;
    char *ref = reference(&n);
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        const bad_case *c = &k_bad[i];
        char out[8192] = "", line[600];
        int lines = 0, done = 0;
        for (const char *s = ref; *s;) {
            const char *e = strchr(s, '\n');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            snprintf(line, sizeof line, "%.*s", (int)len, s);
            s += len + (e ? 1 : 0);
            if (!done && c->find && strncmp(line, c->find, strlen(c->find)) == 0) {
                done = 1;
                if (!c->replace) continue;
                snprintf(line, sizeof line, "%s", c->replace);
            }
            strcat(out, line);
            strcat(out, "\n");
            lines++;
        }
        if (!c->find) { strcat(out, c->replace); strcat(out, "\n"); lines++; }
        else assert_true(done);
        char path[300];
        snprintf(path, sizeof path, "%s/bad%02zu.txt", g_dir, i);
        write_text(path, out, strlen(out));
        fg_cost_params p;
        fg_status st = fg_calibration_load(path, &p);
        if (st != FG_ERR_CALIBRATION) fail_msg("%s: status %d, want FG_ERR_CALIBRATION", c->what, st);
        const char *msg = fg_last_error();
        char want[400];
        snprintf(want, sizeof want, "%s, line %d:", path, c->line ? c->line : lines);
        if (!strstr(msg, want) || !strstr(msg, c->says))
            fail_msg("%s: message '%s' lacks '%s' or '%s'", c->what, msg, want, c->says);
    }
    /* binary content, an overlong line, an empty file, a missing file */
    char path[300];
    snprintf(path, sizeof path, "%s/bin.txt", g_dir);
    char bin[64];
    memcpy(bin, "forgeattn-calibration 1\nlib\x01rary = 0.1.0\n", 41);
    write_text(path, bin, 41);
    fg_cost_params p;
    assert_int_equal(fg_calibration_load(path, &p), FG_ERR_CALIBRATION);
    assert_non_null(strstr(fg_last_error(), "line 2: control byte"));
    char *longline = malloc(2000);
    memset(longline, 'x', 1999);
    memcpy(longline, "forgeattn-calibration 1\n", 24);
    write_text(path, longline, 1999);
    assert_int_equal(fg_calibration_load(path, &p), FG_ERR_CALIBRATION);
    assert_non_null(strstr(fg_last_error(), "line 2: line longer"));
    free(longline);
    write_text(path, "", 0);
    assert_int_equal(fg_calibration_load(path, &p), FG_ERR_CALIBRATION);
    assert_non_null(strstr(fg_last_error(), "empty table"));
    snprintf(path, sizeof path, "%s/does-not-exist.txt", g_dir);
    assert_int_equal(fg_calibration_load(path, &p), FG_ERR_IO);
    assert_int_equal(fg_calibration_load(NULL, &p), FG_ERR_NULL_POINTER);
    free(ref);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A table the reader accepted must hold values inside FORMAT.md's bounds. */
static void accepted_is_sane(const fg_cost_params *p) {
    assert_true(p->copy_gbs > 0.0 && p->copy_gbs <= 1e5);
    assert_true(p->gather_eff > 0.0 && p->gather_eff <= 1.0);
    assert_true(p->mma_tflops_f16 > 0.0 && p->fma_tflops_f32 > 0.0);
    assert_true(p->compute_units >= 1 && p->tile_kv >= 1 && p->tile_rows >= 1);
    assert_true(p->pad_rows >= 1 && p->pad_rows <= p->tile_rows && p->pad_kv >= 1 && p->pad_kv <= p->tile_kv);
}

static void test_fuzz(void **state) {
    (void)state;
    size_t n;
    char *ref = reference(&n);
    char path[300];
    snprintf(path, sizeof path, "%s/fuzz.txt", g_dir);
    fg_cost_params p;
    int accepted = 0, refused = 0;
    /* every truncation: only the whole table (optionally minus its final newline) loads */
    for (size_t k = 0; k < n; k++) {
        write_text(path, ref, k);
        fg_status st = fg_calibration_load(path, &p);
        if (k + 1 < n) assert_int_equal(st, FG_ERR_CALIBRATION);
        assert_non_null(strstr(fg_last_error(), "line "));
    }
    write_text(path, ref, n);
    assert_int_equal(fg_calibration_load(path, &p), FG_SUCCESS);
    uint64_t s = 99;
    char *buf = malloc(n + 1);
    for (int it = 0; it < 2000; it++) {
        memcpy(buf, ref, n);
        int flips = 1 + (int)(rng_next(&s) % 4);
        for (int f = 0; f < flips; f++) buf[rng_next(&s) % n] = (char)(rng_next(&s) & 0xff);
        write_text(path, buf, n);
        fg_status st = fg_calibration_load(path, &p);
        assert_true(st == FG_SUCCESS || st == FG_ERR_CALIBRATION);
        if (st == FG_SUCCESS) { accepted_is_sane(&p); accepted++; } else refused++;
    }
    for (int it = 0; it < 300; it++) {
        size_t len = (size_t)(rng_next(&s) % 3000);
        char *rnd = malloc(len + 1);
        for (size_t k = 0; k < len; k++) rnd[k] = (char)(rng_next(&s) & 0xff);
        write_text(path, rnd, len);
        assert_int_equal(fg_calibration_load(path, &p), FG_ERR_CALIBRATION);
        free(rnd);
    }
    print_message("fuzz: %d byte-flipped tables refused, %d accepted (flips in comments or digits)\n", refused,
                  accepted);
    assert_true(refused > 1000);
    free(buf);
    free(ref);
}

static void test_find(void **state) {
    (void)state;
    static const char *const names[] = {"sm_90-132-h100.txt", "sm_90-100.txt", "sm_90-132-a.txt",
                                        "gfx90a-110.txt", "sm_90x-132.txt", "sm_90-abc.txt", "sm_90-140.txt.bak"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        write_text(p, "x", 1);
    }
    char got[512], want[512];
    assert_int_equal(fg_calibration_find(g_dir, "sm_90", 132, got, sizeof got), 1);
    snprintf(want, sizeof want, "%s/sm_90-132-a.txt", g_dir); /* exact count; ties by name */
    assert_string_equal(got, want);
    assert_int_equal(fg_calibration_find(g_dir, "sm_90", 120, got, sizeof got), 1);
    snprintf(want, sizeof want, "%s/sm_90-132-a.txt", g_dir); /* 12 away beats 20 away */
    assert_string_equal(got, want);
    assert_int_equal(fg_calibration_find(g_dir, "sm_90", 90, got, sizeof got), 1);
    snprintf(want, sizeof want, "%s/sm_90-100.txt", g_dir);
    assert_string_equal(got, want);
    assert_int_equal(fg_calibration_find(g_dir, "sm_9", 132, got, sizeof got), 0);
    assert_int_equal(fg_calibration_find(g_dir, "gfx942", 304, got, sizeof got), 0);
    assert_int_equal(fg_calibration_find("/nonexistent/dir", "sm_90", 132, got, sizeof got), 0);
    assert_int_equal(fg_calibration_find(g_dir, "sm_90", 132, got, 8), 0); /* path would not fit */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_shipped_tables),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests_name("calibration", tests, make_dir, remove_dir);
}
