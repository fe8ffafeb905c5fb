/*
 * Calibration tables: reading, validating and writing the text format of
 * cost_model/FORMAT.md. The reader takes the whole file into memory (bounded), so a
 * NUL byte, an overlong line or a missing `end` can be reported with its line number
 * instead of being silently cut by a line reader.
 */
#define _POSIX_C_SOURCE 200809L
#include "calibration.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FMT_MAGIC "forgeattn-calibration"
#define FMT_VERSION 1
#define MAX_FILE_BYTES 65536
#define MAX_LINE 512

enum kind { K_STR, K_ARCH, K_VERSION, K_DATE, K_KIND, K_INT, K_REAL };

typedef struct field {
    const char *key;
    enum kind kind;
    double lo, hi; /* inclusive bounds; lo_open: lo itself refused */
    int lo_open;
} field;

/* Order = the order fg_calibration_write uses. Bounds refuse what no device has. */
static const field k_fields[] = {
    {"library", K_VERSION, 0, 0, 0},
    {"device", K_STR, 0, 0, 0},
    {"arch", K_ARCH, 0, 0, 0},
    {"compute_units", K_INT, 1, 65536, 0},
    {"date", K_DATE, 0, 0, 0},
    {"kind", K_KIND, 0, 0, 0},
    {"source", K_STR, 0, 0, 0},
    {"blocks_per_unit", K_INT, 1, 64, 0},
    {"warp_size", K_INT, 1, 64, 0},
    {"copy_gbs", K_REAL, 0, 100000, 1},
    {"gather_eff", K_REAL, 0, 1, 1},
    {"mma_tflops_f16", K_REAL, 0, 100000, 1},
    {"fma_tflops_f32", K_REAL, 0, 100000, 1},
    {"task_fixed_us", K_REAL, 0, 10000, 0},
    {"launch_us", K_REAL, 0, 100000, 0},
    {"merge_us_per_row", K_REAL, 0, 1000, 0},
    {"tile_kv", K_INT, 1, 4096, 0},
    {"tile_rows", K_INT, 1, 4096, 0},
    {"pad_rows", K_INT, 1, 4096, 0},
    {"pad_kv", K_INT, 1, 4096, 0},
};
#define NFIELDS ((int)(sizeof k_fields / sizeof k_fields[0]))

static int field_index(const char *key) {
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(k_fields[i].key, key)) return i;
    return 0;
}

static void store(fg_cost_params *p, int f, double v, const char *s) {
    const char *k = k_fields[f].key;
    if (!strcmp(k, "device")) snprintf(p->device, sizeof p->device, "%s", s);
    else if (!strcmp(k, "arch")) snprintf(p->arch, sizeof p->arch, "%s", s);
    else if (!strcmp(k, "kind")) p->measured = !strcmp(s, "measured");
    else if (!strcmp(k, "compute_units")) p->compute_units = (int32_t)v;
    else if (!strcmp(k, "blocks_per_unit")) p->blocks_per_unit = (int32_t)v;
    else if (!strcmp(k, "warp_size")) p->warp_size = (int32_t)v;
    else if (!strcmp(k, "copy_gbs")) p->copy_gbs = v;
    else if (!strcmp(k, "gather_eff")) p->gather_eff = v;
    else if (!strcmp(k, "mma_tflops_f16")) p->mma_tflops_f16 = v;
    else if (!strcmp(k, "fma_tflops_f32")) p->fma_tflops_f32 = v;
    else if (!strcmp(k, "task_fixed_us")) p->task_fixed_us = v;
    else if (!strcmp(k, "launch_us")) p->launch_us = v;
    else if (!strcmp(k, "merge_us_per_row")) p->merge_us_per_row = v;
    else if (!strcmp(k, "tile_kv")) p->tile_kv = (int32_t)v;
    else if (!strcmp(k, "tile_rows")) p->tile_rows = (int32_t)v;
    else if (!strcmp(k, "pad_rows")) p->pad_rows = (int32_t)v;
    else if (!strcmp(k, "pad_kv")) p->pad_kv = (int32_t)v;
}

static double fetch(const fg_cost_params *p, const char *k) {
    if (!strcmp(k, "compute_units")) return p->compute_units;
    if (!strcmp(k, "blocks_per_unit")) return p->blocks_per_unit;
    if (!strcmp(k, "warp_size")) return p->warp_size;
    if (!strcmp(k, "copy_gbs")) return p->copy_gbs;
    if (!strcmp(k, "gather_eff")) return p->gather_eff;
    if (!strcmp(k, "mma_tflops_f16")) return p->mma_tflops_f16;
    if (!strcmp(k, "fma_tflops_f32")) return p->fma_tflops_f32;
    if (!strcmp(k, "task_fixed_us")) return p->task_fixed_us;
    if (!strcmp(k, "launch_us")) return p->launch_us;
    if (!strcmp(k, "merge_us_per_row")) return p->merge_us_per_row;
    if (!strcmp(k, "tile_kv")) return p->tile_kv;
    if (!strcmp(k, "tile_rows")) return p->tile_rows;
    if (!strcmp(k, "pad_rows")) return p->pad_rows;
    if (!strcmp(k, "pad_kv")) return p->pad_kv;
    return NAN;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Checks one value; returns NULL when good, else the reason (static text or buf). */
static const char *check_value(const field *fd, const char *s, double *v, char *buf, size_t len) {
    size_t n = strlen(s);
    if (n == 0) return "empty value";
    switch (fd->kind) {
    case K_STR:
        if (n > 127) return "value longer than 127 characters";
        return NULL;
    case K_ARCH:
        if (n > 31) return "arch longer than 31 characters";
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)s[i]) && s[i] != '_') return "arch may only hold letters, digits and '_'";
        return NULL;
    case K_VERSION: {
        unsigned a, b, c;
        char tail;
        if (n > 20 || sscanf(s, "%3u.%3u.%3u%c", &a, &b, &c, &tail) != 3)
            return "library version is not MAJOR.MINOR.PATCH";
        return NULL;
    }
    case K_DATE: {
        unsigned y, m, d;
        char tail;
        if (n != 10 || s[4] != '-' || s[7] != '-' || sscanf(s, "%4u-%2u-%2u%c", &y, &m, &d, &tail) != 3 ||
            y < 2000 || m < 1 || m > 12 || d < 1 || d > 31)
            return "date is not YYYY-MM-DD";
        return NULL;
    }
    case K_KIND:
        if (strcmp(s, "measured") && strcmp(s, "estimated")) return "kind must be 'measured' or 'estimated'";
        return NULL;
    case K_INT:
    case K_REAL: {
        char *end = NULL;
        errno = 0;
        double x;
        if (fd->kind == K_INT) {
            long long i = strtoll(s, &end, 10);
            x = (double)i;
        } else {
            x = strtod(s, &end);
        }
        if (end == s || *end || errno == ERANGE || !isfinite(x)) {
            snprintf(buf, len, "'%.40s' is not a %s", s, fd->kind == K_INT ? "whole number" : "finite number");
            return buf;
        }
        if (x < fd->lo || x > fd->hi || (fd->lo_open && x == fd->lo)) {
            snprintf(buf, len, "%s = %.40s is outside %s%g, %g]", fd->key, s, fd->lo_open ? "(" : "[",
                     fd->lo, fd->hi);
            return buf;
        }
        *v = x;
        return NULL;
    }
    }
    return "unknown field kind";
}

static fg_status parse(const char *path, const char *text, size_t size, fg_cost_params *out) {
    fg_cost_params p;
    memset(&p, 0, sizeof p);
    int seen_line[NFIELDS];
    memset(seen_line, 0, sizeof seen_line);
    int line = 0, have_magic = 0, have_end = 0;
    size_t pos = 0;
    char buf[MAX_LINE + 1], why[160];
    while (pos < size) {
        size_t e = pos;
        while (e < size && text[e] != '\n') e++;
        line++;
        size_t len = e - pos;
        if (len > MAX_LINE)
            return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: line longer than %d bytes",
                           path, line, MAX_LINE);
        memcpy(buf, text + pos, len);
        buf[len] = '\0';
        pos = e + 1;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)buf[i] < 0x20 && buf[i] != '\t' && buf[i] != '\r')
                return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: control byte 0x%02x "
                               "(not a text file?)", path, line, (unsigned char)buf[i]);
        char *s = buf;
        while (is_blank(*s)) s++;
        char *t = s + strlen(s);
        while (t > s && is_blank(t[-1])) *--t = '\0';
        if (*s == '\0' || *s == '#') continue;
        if (have_end)
            return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: text after 'end'", path, line);
        if (!have_magic) {
            int v = 0;
            char tail;
            if (strncmp(s, FMT_MAGIC " ", sizeof FMT_MAGIC) != 0 ||
                sscanf(s + sizeof FMT_MAGIC, "%9d%c", &v, &tail) != 1)
                return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: expected '" FMT_MAGIC
                               " %d' as the first line", path, line, FMT_VERSION);
            if (v != FMT_VERSION)
                return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: format version %d, this "
                               "library reads version %d", path, line, v, FMT_VERSION);
            have_magic = 1;
            continue;
        }
        if (!strcmp(s, "end")) { have_end = 1; continue; }
        char *eq = strchr(s, '=');
        if (!eq)
            return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: expected 'key = value'", path, line);
        char *k = s, *ke = eq;
        while (ke > k && is_blank(ke[-1])) ke--;
        *ke = '\0';
        char *v = eq + 1;
        while (is_blank(*v)) v++;
        int f = -1;
        for (int i = 0; i < NFIELDS; i++)
            if (!strcmp(k, k_fields[i].key)) f = i;
        if (f < 0)
            return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: unknown key '%.40s'", path, line, k);
        if (seen_line[f])
            return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: duplicate key '%s' (first on line %d)",
                           path, line, k, seen_line[f]);
        double x = 0.0;
        const char *bad = check_value(&k_fields[f], v, &x, why, sizeof why);
        if (bad)
            return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: %s: %s", path, line, k, bad);
        seen_line[f] = line;
        store(&p, f, x, v);
    }
    if (!have_magic)
        return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: empty table (no '" FMT_MAGIC
                       "' line)", path, line);
    for (int i = 0; i < NFIELDS; i++)
        if (!seen_line[i])
            return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: missing key '%s' (truncated?)",
                           path, line, k_fields[i].key);
    if (!have_end)
        return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: no 'end' line (truncated?)", path, line);
    if (p.pad_rows > p.tile_rows || p.pad_kv > p.tile_kv)
        return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: pad_rows = %d / pad_kv = %d exceed "
                       "tile_rows = %d / tile_kv = %d", path, seen_line[field_index(p.pad_rows > p.tile_rows ? "pad_rows" : "pad_kv")],
                       p.pad_rows, p.pad_kv, p.tile_rows, p.tile_kv);
    if (p.fma_tflops_f32 > p.mma_tflops_f16 * 4.0)
        return fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line %d: fma_tflops_f32 = %g is more than 4x "
                       "mma_tflops_f16 = %g (absurd)", path, seen_line[field_index("fma_tflops_f32")], p.fma_tflops_f32, p.mma_tflops_f16);
    *out = p;
    return FG_SUCCESS;
}

fg_status fg_calibration_load(const char *path, fg_cost_params *out) {
    if (!path || !out) return fg_fail(FG_ERR_NULL_POINTER, "fg_calibration_load: path or out is NULL");
    FILE *fp = fopen(path, "rb");
    if (!fp) return fg_fail(FG_ERR_IO, "calibration table %s: cannot open (%s)", path, strerror(errno));
    char *text = malloc(MAX_FILE_BYTES + 1);
    if (!text) {
        fclose(fp);
        return fg_fail(FG_ERR_OUT_OF_MEMORY, "calibration table %s: out of host memory", path);
    }
    size_t n = fread(text, 1, MAX_FILE_BYTES + 1, fp);
    int err = ferror(fp);
    fclose(fp);
    fg_status st;
    if (err) st = fg_fail(FG_ERR_IO, "calibration table %s: read error", path);
    else if (n > MAX_FILE_BYTES)
        st = fg_fail(FG_ERR_CALIBRATION, "calibration table %s, line 1: file larger than %d bytes", path,
                     MAX_FILE_BYTES);
    else st = parse(path, text, n, out);
    free(text);
    return st;
}

/* Shortest %g that reads back as the same double, so tables stay readable and exact. */
static void fmt_exact(char *buf, size_t len, double v) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void clean(char *dst, size_t len, const char *src) {
    snprintf(dst, len, "%s", src && *src ? src : "unknown");
    for (char *c = dst; *c; c++)
        if ((unsigned char)*c < 0x20) *c = ' ';
}

fg_status fg_calibration_write(const char *path, const fg_cost_params *p, const char *date,
                               const char *source) {
    if (!path || !p) return fg_fail(FG_ERR_NULL_POINTER, "fg_calibration_write: path or params is NULL");
    char dev[128], src[128], dt[16];
    clean(dev, sizeof dev, p->device);
    clean(src, sizeof src, source);
    clean(dt, sizeof dt, date);
    FILE *fp = fopen(path, "w");
    if (!fp) return fg_fail(FG_ERR_IO, "fg_calibration_write: cannot create %s (%s)", path, strerror(errno));
    fprintf(fp, FMT_MAGIC " %d\n", FMT_VERSION);
    fprintf(fp, "# Cost-model parameters for forgeattn (format: cost_model/FORMAT.md).\n");
    fprintf(fp, "library = %s\n", fg_version_string());
    fprintf(fp, "device = %s\n", dev);
    fprintf(fp, "arch = %s\n", p->arch);
    fprintf(fp, "compute_units = %d\n", p->compute_units);
    fprintf(fp, "date = %s\n", dt);
    fprintf(fp, "kind = %s\n", p->measured ? "measured" : "estimated");
    fprintf(fp, "source = %s\n", src);
    char num[40];
    for (int i = 7; i < NFIELDS; i++) {
        fmt_exact(num, sizeof num, fetch(p, k_fields[i].key));
        fprintf(fp, "%s = %s\n", k_fields[i].key, num);
    }
    fprintf(fp, "end\n");
    int bad = ferror(fp);
    if (fclose(fp) != 0 || bad) return fg_fail(FG_ERR_IO, "fg_calibration_write: error writing %s", path);
    return FG_SUCCESS;
}

/* File names: <arch>-<compute_units>.txt or <arch>-<compute_units>-<anything>.txt. */
static int name_units(const char *name, const char *arch, long *units) {
    size_t la = strlen(arch), ln = strlen(name);
    if (ln < la + 6 || strncmp(name, arch, la) != 0 || name[la] != '-' || strcmp(name + ln - 4, ".txt") != 0)
        return 0;
    const char *d = name + la + 1;
    if (!isdigit((unsigned char)*d)) return 0;
    char *end;
    long u = strtol(d, &end, 10);
    if (*end != '.' && *end != '-') return 0;
    if (*end == '.' && end != name + ln - 4) return 0;
    *units = u;
    return 1;
}

int fg_calibration_find(const char *dir, const char *arch, int32_t compute_units, char *path,
                        size_t path_len) {
    if (!dir || !arch || !*arch || !path || path_len == 0) return 0;
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    /* Exact unit count first, else the nearest count; ties by name, so the choice does not
     * depend on directory order. */
    char best[256] = "";
    long best_dist = -1;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        long u;
        if (strlen(de->d_name) >= sizeof best || !name_units(de->d_name, arch, &u)) continue;
        long dist = labs(u - (long)compute_units);
        if (best_dist < 0 || dist < best_dist || (dist == best_dist && strcmp(de->d_name, best) < 0)) {
            best_dist = dist;
            snprintf(best, sizeof best, "%s", de->d_name);
        }
    }
    closedir(dp);
    if (best_dist < 0) return 0;
    int n = snprintf(path, path_len, "%s/%s", dir, best);
    return n > 0 && (size_t)n < path_len;
}
