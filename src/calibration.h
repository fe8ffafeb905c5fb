/*
 * Calibration tables: per-device cost parameters stored as text (format in
 * cost_model/FORMAT.md). Loading validates every field and fails with
 * FG_ERR_CALIBRATION and a message naming the file and line (via fg_fail).
 */
#ifndef FG_CALIBRATION_H
#define FG_CALIBRATION_H

#include <stddef.h>
#include <stdint.h>

#include "cost_model.h"

fg_status fg_calibration_load(const char *path, fg_cost_params *out);
/* Write a table (used by perf/forgeattn-calibrate). `source` says how it was made. */
fg_status fg_calibration_write(const char *path, const fg_cost_params *p, const char *date,
                               const char *source);
/* Look in `dir` for the table of this arch and compute-unit count (exact match first,
 * then the same arch with any count). Returns 1 and fills path when one exists. */
int fg_calibration_find(const char *dir, const char *arch, int32_t compute_units, char *path,
                        size_t path_len);

#endif /* FG_CALIBRATION_H */
