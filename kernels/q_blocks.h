// Which sequence, and which of its query tokens, a work-group of the general grid serves: the
// prologue shared by the general kernel (attention.hip) and the tensor-core prefill kernel
// (prefill.hip), which take the same grid (x = q-block, an upper bound from shapes).
#pragma once

#include "pkv_common.h"

namespace pkv {

struct QBlock {
    int active;   // 0: a surplus q-block, a sequence with no query tokens, or one-token rows the
                  // decode kernel serves: the work-group has nothing to do
    int seq;      // the sequence
    int row0;     // its first query/output row (a token index of the batch)
    int ntok;     // query tokens served, from row0
    int seq_len;  // the sequence's length, clamped into the block table
    int p_first;  // position of the first served token (query token t of a sequence of q_len
                  // tokens sits at position seq_len - q_len + t)
    int hpc;      // query heads of this head group
};

// q-blocks of sequence i start at query_start_loc[i] / block_q + i (an upper-bound numbering
// that needs no prefix sum): the owner of q-block qb is the last i whose start <= qb (0 if
// none), i.e. the number of i >= 1 whose start <= qb. Counted by all `nthreads` threads of the
// work-group (every one must call; it synchronises them), a round trip per nthreads sequences,
// rather than by a binary search of one thread (a dependent load per halving: after a
// decode-only batch's decode kernel the general grid's prologue was its whole time, 7-8 us for
// B64; docs/performance.md, session 11). Malformed offsets still give one owner. `words`: 8
// ints of shared memory.
PKV_DEVICE QBlock locate_q_block(const pkv_attention_params& p, int qb, int hg, int tid, int nthreads, int* words) {
    const int bq = p.block_q;
    const int G = p.num_q_heads / p.num_kv_heads;
    int s = 0;
    for (int i0 = 1; i0 < p.num_seqs; i0 += nthreads) {
        const int i = i0 + tid;
        s += __syncthreads_count(i < p.num_seqs && qsl_at(p, i) / bq + i <= qb);
    }
    if (tid == 0) {
        const int q_begin = qsl_at(p, s);
        const int q_end = max(q_begin, qsl_at(p, s + 1));
        const int q_len = q_end - q_begin;
        const int local = qb - (q_begin / bq + s);
        const int tok0 = local * bq;
        // Sequences with one query token belong to the decode kernel (decode.hip) when it runs.
        const int active = local >= 0 && tok0 < q_len && !(p.decode_kernel && q_len == 1);
        const int64_t max_len = static_cast<int64_t>(p.max_blocks_per_seq) * p.block_size;
        const int seq_len = clamp_int(p.seq_lens[s * p.seq_lens_stride], 0, max_len);
        words[0] = active;
        words[1] = q_begin + tok0;
        words[2] = active ? min(bq, q_len - tok0) : 0;
        words[3] = seq_len;
        words[4] = seq_len - q_len + tok0;
        words[5] = min(p.heads_per_cta, G - hg * p.heads_per_cta);
    }
    __syncthreads();
    QBlock b;
    b.active = words[0];
    b.seq = s;
    b.row0 = words[1];
    b.ntok = words[2];
    b.seq_len = words[3];
    b.p_first = words[4];
    b.hpc = words[5];
    return b;
}

}  // namespace pkv
