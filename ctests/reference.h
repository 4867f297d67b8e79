/* An independent paged-attention reference in double precision, written from design.md §5
 * (not from the library): it reads keys and values from plain logical arrays, never from a
 * paged cache. Header-only, valid C11 and C++17. */
#ifndef PKV_TEST_REFERENCE_H
#define PKV_TEST_REFERENCE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ref_problem {
  int num_seqs;
  const int32_t *seq_lens;        /* [num_seqs] */
  const int32_t *query_start_loc; /* [num_seqs + 1] */
  int num_q_heads;
  int num_kv_heads;
  int head_size;
  const float *query;    /* token t, head h, dim d at query[t * query_row_stride + h * head_size + d] */
  int64_t query_row_stride;
  const float *keys;     /* [num_seqs][max_seq_len][num_kv_heads][head_size] */
  const float *values;   /* same shape */
  int max_seq_len;
  double sm_scale;       /* 0: 1 / sqrt(head_size) */
  int causal;
  int sliding_window;    /* > 0: key j visible only if p - j < W */
  double soft_cap;       /* > 0: c * tanh(score / c) */
  const float *alibi_slopes; /* [num_q_heads] or NULL: + slope * (j - p) */
  const float *sinks;        /* [num_q_heads] or NULL: one extra logit with a zero value */
} ref_problem;

static inline double ref_dot(const float *a, const float *b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += (double)a[i] * (double)b[i];
  return s;
}

/* out: [num_tokens][num_q_heads][head_size]; rows of tokens outside every sequence are left
 * as they are. `logits` is scratch of max_seq_len doubles. */
static inline void reference_attention(const ref_problem *p, double *out, double *logits) {
  const int d_size = p->head_size;
  const int group = p->num_q_heads / p->num_kv_heads;
  const double scale = p->sm_scale != 0.0 ? p->sm_scale : 1.0 / sqrt((double)d_size);
  for (int s = 0; s < p->num_seqs; ++s) {
    const int q_len = p->query_start_loc[s + 1] - p->query_start_loc[s];
    const int seq_len = p->seq_lens[s];
    const float *keys = p->keys + (size_t)s * (size_t)p->max_seq_len * (size_t)p->num_kv_heads * (size_t)d_size;
    const float *values = p->values + (size_t)s * (size_t)p->max_seq_len * (size_t)p->num_kv_heads * (size_t)d_size;
    for (int i = 0; i < q_len; ++i) {
      const int row = p->query_start_loc[s] + i;
      const int pos = seq_len - q_len + i;
      for (int h = 0; h < p->num_q_heads; ++h) {
        const int kvh = h / group;
        const float *q = p->query + (size_t)row * (size_t)p->query_row_stride + (size_t)h * (size_t)d_size;
        double m = -INFINITY;
        for (int j = 0; j < seq_len; ++j) {
          int visible = p->causal ? j <= pos : 1;
          if (p->sliding_window > 0 && !(pos - j < p->sliding_window)) visible = 0;
          if (!visible) {
            logits[j] = -INFINITY;
            continue;
          }
          const float *k = keys + ((size_t)j * (size_t)p->num_kv_heads + (size_t)kvh) * (size_t)d_size;
          double score = scale * ref_dot(q, k, d_size);
          if (p->soft_cap > 0.0) score = p->soft_cap * tanh(score / p->soft_cap);
          if (p->alibi_slopes != NULL) score += (double)p->alibi_slopes[h] * (double)(j - pos);
          logits[j] = score;
          if (score > m) m = score;
        }
        const double sink = p->sinks != NULL ? (double)p->sinks[h] : -INFINITY;
        if (sink > m) m = sink;
        double denom = p->sinks != NULL && m > -INFINITY ? exp(sink - m) : 0.0;
        double *o = out + ((size_t)row * (size_t)p->num_q_heads + (size_t)h) * (size_t)d_size;
        for (int d = 0; d < d_size; ++d) o[d] = 0.0;
        for (int j = 0; j < seq_len; ++j) {
          if (logits[j] == -INFINITY) continue;
          const double w = exp(logits[j] - m);
          const float *v = values + ((size_t)j * (size_t)p->num_kv_heads + (size_t)kvh) * (size_t)d_size;
          denom += w;
          for (int d = 0; d < d_size; ++d) o[d] += w * (double)v[d];
        }
        for (int d = 0; d < d_size; ++d) o[d] = denom > 0.0 ? o[d] / denom : 0.0;
      }
    }
  }
}

#endif /* PKV_TEST_REFERENCE_H */
