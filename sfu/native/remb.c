/* RembEstimator: the receive-side, delay-based bandwidth estimate a publisher's REMB carries.
 *
 * The Python data path uses aiortc's RemoteBitrateEstimator (aiortc/rate.py, itself adapted from
 * libwebrtc's remote_bitrate_estimator_abs_send_time): abs-send-time groups -> inter-arrival deltas
 * -> Kalman overuse estimator -> overuse detector -> AIMD rate control, plus a 1 s incoming-rate
 * window. It runs on every video packet with abs-send-time and was the largest single cost of
 * Ingress.on_rtp (~40 % of it in bench/micro). This is the same algorithm in C, written to give the
 * same result for the same packets: every double is computed with the same operations in the same
 * order (setup.py builds with -ffp-contract=off so no multiply-add is fused), Python's round() is
 * nearbyint() (half to even), int() is truncation, `x ** 2` is a real pow(x, 2.0) as in CPython
 * (py_square: not x * x, which rounds differently), clamps keep Python's NaN behaviour, and None
 * is an explicit "has" flag. tests/unit/sfu/native/test_remb_parity.py replays packet sequences
 * into both and requires equal results packet by packet.
 *
 * Differences, none reachable from the Ingress (whose sizes are whole packets, 12..65,535 bytes):
 * inputs outside those sizes, 24-bit abs-send-time and +-2^40 ms are refused (ValueError); a zero
 * current bitrate does not divide by zero (aiortc raises ZeroDivisionError); a jump of the clock by
 * more than the rate window clears the window at once instead of one millisecond at a time (the
 * same result; aiortc's walk is a hang after a long pause); and the SSRCs a result names stop at
 * the first 64 (aiortc's dict grows without bound; an Ingress has a few per track).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "forward.h"

#define RATE_WINDOW_MS 1000
#define RATE_SCALE 8000
#define BURST_DELTA_THRESHOLD_MS 5
#define MAX_ADAPT_OFFSET_MS 15
#define MIN_NUM_DELTAS 60
#define DELTA_COUNTER_MAX 1000
#define MIN_FRAME_PERIOD_HISTORY_LENGTH 60
#define INTER_ARRIVAL_SHIFT 26
#define TIMESTAMP_GROUP_LENGTH_MS 5
#define FEEDBACK_INTERVAL_MS 500
#define MAX_SSRCS 64 /* the SSRCs a REMB names; an Ingress has at most a few per track */

enum { NORMAL = 0, UNDERUSING = 1, OVERUSING = 2 };
enum { HOLD = 0, INCREASE = 1, DECREASE = 2 };

typedef struct {
    int has;
    uint32_t first_ts, last_ts;
    int has_arrival;
    int64_t arrival;
    int64_t size;
} Group;

typedef struct {
    PyObject_HEAD
    /* incoming rate: 1 ms buckets over RATE_WINDOW_MS */
    int64_t rc_count[RATE_WINDOW_MS];
    int64_t rc_value[RATE_WINDOW_MS];
    int64_t rc_origin_index;
    int rc_has_origin;
    int64_t rc_origin_ms;
    int64_t rc_total_count, rc_total_value;
    int incoming_initialized;
    /* inter-arrival groups */
    Group cur, prev;
    /* overuse estimator (Kalman filter) */
    double E[2][2];
    int64_t num_deltas;
    double offset, est_prev_offset, slope;
    double hist[MIN_FRAME_PERIOD_HISTORY_LENGTH];
    int hist_len, hist_start;
    double avg_noise, var_noise;
    /* overuse detector */
    int hypothesis;
    int det_has_last_update;
    int64_t det_last_update_ms;
    int64_t overuse_counter;
    int has_overuse_time;
    double overuse_time;
    double det_prev_offset;
    double threshold;
    /* AIMD rate control */
    int has_avg_max;
    double avg_max_kbps, var_max_kbps;
    int64_t current_bitrate;
    int bitrate_initialized;
    int has_first_tp;
    int64_t first_tp_ms;
    int has_last_change;
    int64_t last_change_ms;
    int near_max;
    int64_t latest_tp;
    int64_t rtt;
    int state;
    /* the estimator */
    int has_last_update;
    int64_t last_update_ms;
    uint32_t ssrcs[MAX_SSRCS]; /* in first-seen order, as a dict's keys */
    int n_ssrcs;
} RembObject;

static PyTypeObject RembType;

static const double TIMESTAMP_TO_MS = 1000.0 / (double)(1 << INTER_ARRIVAL_SHIFT);
static const int64_t GROUP_LENGTH = ((int64_t)TIMESTAMP_GROUP_LENGTH_MS << INTER_ARRIVAL_SHIFT) / 1000;

/* Python's `x ** 2` on a float: CPython calls pow(x, 2.0), which glibc rounds differently from
 * x * x for some x. GCC turns a literal pow(x, 2.0) into x * x, so the exponent is hidden from it. */
static double py_square(double x) {
    volatile double two = 2.0;
    return pow(x, two);
}

static int64_t floor_mod(int64_t a, int64_t m) {
    int64_t r = a % m;
    return r < 0 ? r + m : r;
}

static int uint32_gt(uint32_t a, uint32_t b) {
    const uint32_t half = 0x80000000u;
    return (a < b && (b - a) > half) || (a > b && (a - b) < half);
}

/* --- incoming rate ---------------------------------------------------------------------------- */
static void rc_reset(RembObject *s) {
    memset(s->rc_count, 0, sizeof s->rc_count);
    memset(s->rc_value, 0, sizeof s->rc_value);
    s->rc_origin_index = 0;
    s->rc_has_origin = 0;
    s->rc_origin_ms = 0;
    s->rc_total_count = s->rc_total_value = 0;
}

static void rc_erase_old(RembObject *s, int64_t now_ms) {
    int64_t new_origin = now_ms - RATE_WINDOW_MS + 1;
    if (s->rc_origin_ms >= new_origin)
        return;
    int64_t steps = new_origin - s->rc_origin_ms;
    if (steps >= RATE_WINDOW_MS) { /* every bucket goes: the same as walking them all */
        memset(s->rc_count, 0, sizeof s->rc_count);
        memset(s->rc_value, 0, sizeof s->rc_value);
        s->rc_total_count = s->rc_total_value = 0;
        s->rc_origin_index = floor_mod(s->rc_origin_index + steps, RATE_WINDOW_MS);
        s->rc_origin_ms = new_origin;
        return;
    }
    while (s->rc_origin_ms < new_origin) {
        int64_t i = s->rc_origin_index;
        s->rc_total_count -= s->rc_count[i];
        s->rc_total_value -= s->rc_value[i];
        s->rc_count[i] = 0;
        s->rc_value[i] = 0;
        s->rc_origin_index = (i + 1) % RATE_WINDOW_MS;
        s->rc_origin_ms += 1;
    }
}

static void rc_add(RembObject *s, int64_t value, int64_t now_ms) {
    if (!s->rc_has_origin) {
        s->rc_has_origin = 1;
        s->rc_origin_ms = now_ms;
    } else {
        rc_erase_old(s, now_ms);
    }
    int64_t i = floor_mod(s->rc_origin_index + now_ms - s->rc_origin_ms, RATE_WINDOW_MS);
    s->rc_count[i] += 1;
    s->rc_value[i] += value;
    s->rc_total_count += 1;
    s->rc_total_value += value;
}

/* 1 and *out set when there is a rate (aiortc: not None) */
static int rc_rate(RembObject *s, int64_t now_ms, int64_t *out) {
    if (!s->rc_has_origin)
        return 0;
    rc_erase_old(s, now_ms);
    int64_t active = now_ms - s->rc_origin_ms + 1;
    if (s->rc_total_count > 0 && active > 1) {
        *out = (int64_t)nearbyint((double)(RATE_SCALE * s->rc_total_value) / (double)active);
        return 1;
    }
    return 0;
}

/* --- inter-arrival ---------------------------------------------------------------------------- */
static int belongs_to_burst(RembObject *s, uint32_t ts, int64_t arrival) {
    uint32_t ts_delta = ts - s->cur.last_ts;
    double ts_delta_ms = nearbyint(TIMESTAMP_TO_MS * (double)ts_delta);
    int64_t arrival_delta = arrival - s->cur.arrival;
    return ts_delta_ms == 0 || (((double)arrival_delta - ts_delta_ms) < 0 && arrival_delta <= BURST_DELTA_THRESHOLD_MS);
}

/* 1 when a group completed: *d_ts, *d_arrival, *d_size are the deltas */
static int compute_deltas(RembObject *s, uint32_t ts, int64_t arrival, int64_t size, uint32_t *d_ts,
                          int64_t *d_arrival, int64_t *d_size) {
    int deltas = 0;
    if (!s->cur.has) {
        s->cur.has = 1;
        s->cur.first_ts = s->cur.last_ts = ts;
        s->cur.has_arrival = 0;
        s->cur.size = 0;
    } else if ((uint32_t)(ts - s->cur.first_ts) >= 0x80000000u) {
        return 0; /* out of order */
    } else if (!belongs_to_burst(s, ts, arrival) && (int64_t)(uint32_t)(ts - s->cur.first_ts) > GROUP_LENGTH) {
        if (s->prev.has) {
            *d_ts = s->cur.last_ts - s->prev.last_ts;
            *d_arrival = s->cur.arrival - s->prev.arrival;
            *d_size = s->cur.size - s->prev.size;
            deltas = 1;
        }
        s->prev = s->cur;
        s->cur.has = 1;
        s->cur.first_ts = s->cur.last_ts = ts;
        s->cur.has_arrival = 0;
        s->cur.size = 0;
    } else if (uint32_gt(ts, s->cur.last_ts)) {
        s->cur.last_ts = ts;
    }
    s->cur.size += size;
    s->cur.arrival = arrival;
    s->cur.has_arrival = 1;
    return deltas;
}

/* --- overuse estimator ------------------------------------------------------------------------ */
static double update_min_frame_period(RembObject *s, double ts_delta) {
    double m = ts_delta;
    if (s->hist_len >= MIN_FRAME_PERIOD_HISTORY_LENGTH) { /* pop the oldest */
        s->hist_start = (s->hist_start + 1) % MIN_FRAME_PERIOD_HISTORY_LENGTH;
        s->hist_len -= 1;
    }
    for (int k = 0; k < s->hist_len; k++) {
        double old = s->hist[(s->hist_start + k) % MIN_FRAME_PERIOD_HISTORY_LENGTH];
        if (old < m) /* min(old, m): the first argument when equal, the same double either way */
            m = old;
    }
    s->hist[(s->hist_start + s->hist_len) % MIN_FRAME_PERIOD_HISTORY_LENGTH] = ts_delta;
    s->hist_len += 1;
    return m;
}

static void update_noise_estimate(RembObject *s, double residual, double ts_delta) {
    double alpha = 0.01;
    if (s->num_deltas > 10 * 30)
        alpha = 0.002;
    double beta = pow(1 - alpha, ts_delta * 30.0 / 1000.0);
    s->avg_noise = beta * s->avg_noise + (1 - beta) * residual;
    s->var_noise = beta * s->var_noise + (1 - beta) * py_square(s->avg_noise - residual);
    if (s->var_noise < 1)
        s->var_noise = 1;
}

static void estimator_update(RembObject *s, int64_t time_delta_ms, double timestamp_delta_ms, int64_t size_delta,
                             int hypothesis) {
    const double noise0 = 1e-13, noise1 = 1e-3;
    double min_frame_period = update_min_frame_period(s, timestamp_delta_ms);
    double t_ts_delta = (double)time_delta_ms - timestamp_delta_ms;
    double h0 = (double)size_delta, h1 = 1.0;

    s->num_deltas = s->num_deltas + 1 < DELTA_COUNTER_MAX ? s->num_deltas + 1 : DELTA_COUNTER_MAX;
    s->E[0][0] += noise0;
    s->E[1][1] += noise1;
    if ((hypothesis == OVERUSING && s->offset < s->est_prev_offset) ||
        (hypothesis == UNDERUSING && s->offset > s->est_prev_offset))
        s->E[1][1] += 10 * noise1;

    double Eh0 = s->E[0][0] * h0 + s->E[0][1] * h1;
    double Eh1 = s->E[1][0] * h0 + s->E[1][1] * h1;
    double residual = t_ts_delta - s->slope * h0 - s->offset;
    if (hypothesis == NORMAL) {
        double max_residual = 3.0 * sqrt(s->var_noise);
        if (fabs(residual) < max_residual)
            update_noise_estimate(s, residual, min_frame_period);
        else
            update_noise_estimate(s, residual < 0 ? -max_residual : max_residual, min_frame_period);
    }
    double denom = s->var_noise + h0 * Eh0 + h1 * Eh1;
    double K0 = Eh0 / denom, K1 = Eh1 / denom;
    double IKh00 = 1.0 - K0 * h0, IKh01 = -K0 * h1, IKh10 = -K1 * h0, IKh11 = 1.0 - K1 * h1;
    double e00 = s->E[0][0], e01 = s->E[0][1];
    s->E[0][0] = e00 * IKh00 + s->E[1][0] * IKh01;
    s->E[0][1] = e01 * IKh00 + s->E[1][1] * IKh01;
    s->E[1][0] = e00 * IKh10 + s->E[1][0] * IKh11;
    s->E[1][1] = e01 * IKh10 + s->E[1][1] * IKh11;
    s->est_prev_offset = s->offset;
    s->slope += K0 * residual;
    s->offset += K1 * residual;
}

/* --- overuse detector ------------------------------------------------------------------------- */
static void update_threshold(RembObject *s, double modified_offset, int64_t now_ms) {
    if (!s->det_has_last_update) {
        s->det_has_last_update = 1;
        s->det_last_update_ms = now_ms;
    }
    if (fabs(modified_offset) > s->threshold + MAX_ADAPT_OFFSET_MS) {
        s->det_last_update_ms = now_ms;
        return;
    }
    double k = fabs(modified_offset) < s->threshold ? 0.039 : 0.0087;
    int64_t dt = now_ms - s->det_last_update_ms;
    if (dt > 100)
        dt = 100;
    s->threshold += k * (fabs(modified_offset) - s->threshold) * (double)dt;
    if (s->threshold > 600) /* max(6, min(threshold, 600)), NaN included: min keeps it, max gives 6 */
        s->threshold = 600;
    if (!(s->threshold > 6))
        s->threshold = 6;
    s->det_last_update_ms = now_ms;
}

static void detect(RembObject *s, double offset, double ts_delta_ms, int64_t num_deltas, int64_t now_ms) {
    if (num_deltas < 2)
        return;
    double T = (double)(num_deltas < MIN_NUM_DELTAS ? num_deltas : MIN_NUM_DELTAS) * offset;
    if (T > s->threshold) {
        if (!s->has_overuse_time) {
            s->has_overuse_time = 1;
            s->overuse_time = ts_delta_ms / 2;
        } else {
            s->overuse_time += ts_delta_ms;
        }
        s->overuse_counter += 1;
        if (s->overuse_time > 10 && s->overuse_counter > 1 && offset >= s->det_prev_offset) {
            s->overuse_counter = 0;
            s->overuse_time = 0;
            s->hypothesis = OVERUSING;
        }
    } else if (T < -s->threshold) {
        s->overuse_counter = 0;
        s->has_overuse_time = 0;
        s->hypothesis = UNDERUSING;
    } else {
        s->overuse_counter = 0;
        s->has_overuse_time = 0;
        s->hypothesis = NORMAL;
    }
    s->det_prev_offset = offset;
    update_threshold(s, T, now_ms);
}

/* --- AIMD rate control ------------------------------------------------------------------------ */
static int64_t near_max_rate_increase(RembObject *s) {
    double bits_per_frame = (double)s->current_bitrate / 30;
    double packets_per_frame = ceil(bits_per_frame / (8 * 1200));
    if (packets_per_frame == 0) /* aiortc divides by zero here; see the file comment */
        packets_per_frame = 1;
    double avg_packet_size_bits = bits_per_frame / packets_per_frame;
    int64_t response_time = s->rtt + 100;
    int64_t inc = (int64_t)((avg_packet_size_bits * 1000) / (double)response_time);
    return inc > 4000 ? inc : 4000;
}

static int64_t clamp_bitrate(RembObject *s, int64_t new_bitrate, int64_t tp) {
    int64_t max_bitrate = (int64_t)(1.5 * (double)tp) + 10000;
    if (s->current_bitrate > max_bitrate)
        max_bitrate = s->current_bitrate;
    return new_bitrate < max_bitrate ? new_bitrate : max_bitrate;
}

static void update_max_throughput_estimate(RembObject *s, double tp_kbps) {
    double alpha = 0.05;
    if (!s->has_avg_max) {
        s->has_avg_max = 1;
        s->avg_max_kbps = tp_kbps;
    } else {
        s->avg_max_kbps = (1 - alpha) * s->avg_max_kbps + alpha * tp_kbps;
    }
    double norm = s->avg_max_kbps > 1 ? s->avg_max_kbps : 1;
    s->var_max_kbps = (1 - alpha) * s->var_max_kbps + alpha * py_square(s->avg_max_kbps - tp_kbps) / norm;
    if (s->var_max_kbps > 2.5) /* max(0.4, min(var, 2.5)), NaN included */
        s->var_max_kbps = 2.5;
    if (!(s->var_max_kbps > 0.4))
        s->var_max_kbps = 0.4;
}

/* 1 and *out when there is a target bitrate (aiortc: not None) */
static int rate_control_update(RembObject *s, int usage, int has_tp, int64_t tp, int64_t now_ms, int64_t *out) {
    if (!s->bitrate_initialized && has_tp) {
        if (!s->has_first_tp) {
            s->has_first_tp = 1;
            s->first_tp_ms = now_ms;
        } else if (now_ms - s->first_tp_ms > 3000) {
            s->current_bitrate = tp;
            s->bitrate_initialized = 1;
        }
    }
    if (!s->bitrate_initialized && usage != OVERUSING)
        return 0;
    if (usage == NORMAL && s->state == HOLD) {
        s->has_last_change = 1;
        s->last_change_ms = now_ms;
        s->state = INCREASE;
    } else if (usage == OVERUSING) {
        s->state = DECREASE;
    } else if (usage == UNDERUSING) {
        s->state = HOLD;
    }
    int64_t new_bitrate = s->current_bitrate;
    if (has_tp)
        s->latest_tp = tp;
    else
        tp = s->latest_tp;
    double tp_kbps = (double)tp / 1000;

    if (s->state == INCREASE) {
        if (s->has_avg_max) {
            double sigma = sqrt(s->var_max_kbps * s->avg_max_kbps);
            if (tp_kbps >= s->avg_max_kbps + 3 * sigma) {
                s->near_max = 0;
                s->has_avg_max = 0;
            }
        }
        if (s->near_max) {
            int64_t last = s->has_last_change ? s->last_change_ms : now_ms;
            new_bitrate += (int64_t)((double)((now_ms - last) * near_max_rate_increase(s)) / 1000);
        } else {
            double alpha = 1.08;
            if (s->has_last_change) {
                int64_t elapsed = now_ms - s->last_change_ms;
                if (elapsed > 1000)
                    elapsed = 1000;
                alpha = pow(alpha, (double)elapsed / 1000);
            }
            double inc = (alpha - 1) * (double)new_bitrate;
            new_bitrate += (int64_t)(inc < 1000 ? 1000 : inc);
        }
        s->has_last_change = 1;
        s->last_change_ms = now_ms;
    } else if (s->state == DECREASE) {
        if (s->has_avg_max) {
            double sigma = sqrt(s->var_max_kbps * s->avg_max_kbps);
            if (tp_kbps < s->avg_max_kbps - 3 * sigma)
                s->has_avg_max = 0;
        }
        update_max_throughput_estimate(s, tp_kbps);
        s->near_max = 1;
        new_bitrate = (int64_t)nearbyint(0.85 * (double)tp);
        s->has_last_change = 1;
        s->last_change_ms = now_ms;
        s->state = HOLD;
    }
    s->current_bitrate = clamp_bitrate(s, new_bitrate, tp);
    *out = s->current_bitrate;
    return 1;
}

/* --- the Python object ------------------------------------------------------------------------ */
static void remb_reset(RembObject *s) {
    memset((char *)s + sizeof(PyObject), 0, sizeof(RembObject) - sizeof(PyObject));
    s->incoming_initialized = 1;
    s->E[0][0] = 100.0;
    s->E[1][1] = 0.1;
    s->slope = 1.0 / 64;
    s->var_noise = 50.0;
    s->hypothesis = NORMAL;
    s->threshold = 12.5;
    s->var_max_kbps = 0.4;
    s->current_bitrate = 30000000;
    s->latest_tp = 30000000;
    s->rtt = 200;
    s->state = HOLD;
}

static PyObject *Remb_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    RembObject *s = (RembObject *)type->tp_alloc(type, 0);
    if (s != NULL)
        remb_reset(s); /* a usable estimator even if __init__ never runs */
    return (PyObject *)s;
}

static int Remb_init(RembObject *s, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist))
        return -1;
    remb_reset(s);
    return 0;
}

static void note_ssrc(RembObject *s, uint32_t ssrc) {
    for (int i = 0; i < s->n_ssrcs; i++)
        if (s->ssrcs[i] == ssrc)
            return;
    if (s->n_ssrcs < MAX_SSRCS)
        s->ssrcs[s->n_ssrcs++] = ssrc;
}

/* One packet: what `add` does, for callers in C. The arguments must be in add's ranges (checked
 * by `remb_args_ok`). 1 with *target set when the estimate is updated, 0 when not. */
static int remb_add(RembObject *s, long long arrival, uint32_t ast, long long size, uint32_t ssrc, int64_t *target) {
    uint32_t timestamp = ast << 8;
    note_ssrc(s, ssrc);

    int64_t rate;
    if (rc_rate(s, arrival, &rate)) {
        s->incoming_initialized = 1;
    } else if (s->incoming_initialized) {
        rc_reset(s);
        s->incoming_initialized = 0;
    }
    rc_add(s, size, arrival);

    uint32_t d_ts;
    int64_t d_arrival, d_size;
    if (compute_deltas(s, timestamp, arrival, size, &d_ts, &d_arrival, &d_size)) {
        double ts_delta_ms = (double)d_ts * TIMESTAMP_TO_MS;
        estimator_update(s, d_arrival, ts_delta_ms, d_size, s->hypothesis);
        detect(s, s->offset, ts_delta_ms, s->num_deltas, arrival);
    }

    int update = !s->has_last_update || (arrival - s->last_update_ms) > FEEDBACK_INTERVAL_MS ||
                 s->hypothesis == OVERUSING;
    if (update) {
        int64_t tp = 0;
        int has_tp = rc_rate(s, arrival, &tp);
        if (rate_control_update(s, s->hypothesis, has_tp, tp, arrival, target)) {
            s->has_last_update = 1;
            s->last_update_ms = arrival;
            return 1;
        }
    }
    return 0;
}

/* What the Ingress can send (a datagram's size, loop time in ms) and what keeps every product below
 * int64 and every integer exact in a double, as they are in Python: a packet is at most 65,535
 * bytes, times are within +-2^40 ms (35 years). */
static inline int remb_args_ok(long long arrival, unsigned long ast, long long size, unsigned long ssrc) {
    return ast <= 0xFFFFFF && ssrc <= 0xFFFFFFFFul && size >= 0 && size <= 0xFFFF && arrival <= (1LL << 40) &&
           arrival >= -(1LL << 40);
}

int bs_remb_add(PyObject *o, long long arrival, uint32_t ast, long long size, uint32_t ssrc, long long *target) {
    if (!PyObject_TypeCheck(o, &RembType) || !remb_args_ok(arrival, ast, size, ssrc))
        return -1;
    int64_t t = 0;
    int r = remb_add((RembObject *)o, arrival, ast, size, ssrc, &t);
    *target = (long long)t;
    return r;
}

static PyObject *Remb_add(RembObject *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "add(arrival_time_ms, abs_send_time, payload_size, ssrc)");
        return NULL;
    }
    long long arrival = PyLong_AsLongLong(args[0]);
    if (arrival == -1 && PyErr_Occurred())
        return NULL;
    unsigned long ast = PyLong_AsUnsignedLong(args[1]);
    if (ast == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    long long size = PyLong_AsLongLong(args[2]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    unsigned long ssrc = PyLong_AsUnsignedLong(args[3]);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (!remb_args_ok(arrival, ast, size, ssrc)) {
        PyErr_SetString(PyExc_ValueError, "abs_send_time is 24 bits, ssrc 32 bits, size at most 65535, "
                                          "arrival within +-2^40 ms");
        return NULL;
    }
    int64_t target;
    if (!remb_add(s, arrival, (uint32_t)ast, size, (uint32_t)ssrc, &target))
        Py_RETURN_NONE;
    PyObject *ssrcs = PyList_New(s->n_ssrcs);
    if (ssrcs == NULL)
        return NULL;
    for (int i = 0; i < s->n_ssrcs; i++) {
        PyObject *v = PyLong_FromUnsignedLong(s->ssrcs[i]);
        if (v == NULL) {
            Py_DECREF(ssrcs);
            return NULL;
        }
        PyList_SET_ITEM(ssrcs, i, v);
    }
    return Py_BuildValue("(LN)", (long long)target, ssrcs);
}

static PyObject *Remb_get_state(RembObject *s, void *closure) {
    /* what the twin tests compare besides the results (names as in aiortc) */
    return Py_BuildValue("{s:d,s:d,s:d,s:L,s:i,s:d,s:L,s:i}", "offset", s->offset, "slope", s->slope, "threshold",
                         s->threshold, "num_deltas", (long long)s->num_deltas, "hypothesis", s->hypothesis,
                         "var_noise", s->var_noise, "current_bitrate", (long long)s->current_bitrate, "state",
                         s->state);
}

static PyMethodDef Remb_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Remb_add, METH_FASTCALL,
     "add(arrival_time_ms, abs_send_time, payload_size, ssrc) -> (bitrate, [ssrc, ...]) or None, as aiortc's"},
    {NULL},
};

static PyGetSetDef Remb_getset[] = {
    {"state", (getter)Remb_get_state, NULL, "the estimator's state (tests)", NULL},
    {NULL},
};

static PyTypeObject RembType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._native.RembEstimator",
    .tp_basicsize = sizeof(RembObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's RemoteBitrateEstimator in C: the same estimate for the same packets",
    .tp_new = Remb_new,
    .tp_init = (initproc)Remb_init,
    .tp_methods = Remb_methods,
    .tp_getset = Remb_getset,
};

int bs_register_remb(PyObject *m) {
    if (PyType_Ready(&RembType) < 0)
        return -1;
    Py_INCREF(&RembType);
    if (PyModule_AddObject(m, "RembEstimator", (PyObject *)&RembType) < 0) {
        Py_DECREF(&RembType);
        return -1;
    }
    return 0;
}
