// SPDX-License-Identifier: MIT
// autograd/sync_batch_norm.hpp: batch normalisation whose training statistics are those of the
// whole global batch of a data-parallel run, every rank's share included (torch.nn.SyncBatchNorm).
// The ranks talk through a ReplicaSum (dist/mpi.hpp's MpiReplicaSum sums over MPI); nothing here
// knows MPI. Per channel c, with m_r the elements rank r holds (N_r x H x W) and M = sum m_r:
//   forward   mean = sum_r sum x / M, var = sum_r sum (x - mean)^2 / M (two sums over the ranks:
//             the second is centred, as the one-process kernel computes it), y = (x - mean) invstd
//             gamma + beta; running_var takes the unbiased var x M / (M - 1).
//   backward  dgamma = sum dy xhat, dbeta = sum dy over this rank only (the gradient averaging
//             that follows sums them over the ranks, as DDP does with SyncBatchNorm's), and
//             dx = gamma invstd (dy - S_dy / M - xhat S_dyxhat / M) with S_dy, S_dyxhat summed over
//             every rank: one more sum. Each rank's dy is the gradient of its own mean loss, i.e.
//             world x that of the global mean loss, which the averaging divides back out.
// Every rank must run the same sums in the same order (the same model: it does). Sums in double.
// CPU backend only: a CUDA run with model.sync_bn is refused where it is configured.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "medimg/autograd/functions.hpp"
#include "medimg/core/parallel.hpp"

namespace medimg::autograd {

/// Elementwise sum over the replicas of a data-parallel run, in place (an all-reduce); every
/// replica calls it with the same n at the same point.
struct ReplicaSum {
    virtual ~ReplicaSum() = default;
    virtual void sum(double* x, std::int64_t n) = 0;
};

/// Training-mode batch norm of x (N, C, H, W) with statistics over every replica's batch.
/// gamma and beta (C) are the affine Vars; the running statistics are updated in place.
template <class T, class B>
Var<T, B> sync_batch_norm(const Var<T, B>& x, const Var<T, B>& gamma, const Var<T, B>& beta, Tensor<T, B> running_mean,
                          Tensor<T, B> running_var, double momentum, double eps, std::shared_ptr<ReplicaSum> replicas) {
    if constexpr (!std::is_same_v<B, Cpu>) {
        throw ValueError("SyncBatchNorm: the statistics are summed over the replicas on the CPU backend only; "
                         "set model.sync_bn false on CUDA");
    } else {
        MEDIMG_CHECK(x.shape().rank() == 4 && gamma.defined() && beta.defined() && gamma.shape() == Shape{x.size(1)} &&
                         beta.shape() == Shape{x.size(1)} && x.value().storage() == Precision::fp32,
                     ShapeError, "sync_batch_norm: need float32 x (N, C, H, W) and gamma, beta (C); got ", x.shape(), ", ",
                     gamma.shape(), ", ", beta.shape());
        const std::int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
        const Tensor<T, Cpu> xv = x.value();  // a handle (tensors are dense)
        const T* xp = xv.data();
        // Sum 1: per-channel sums and this rank's element count.
        std::vector<double> s(static_cast<std::size_t>(C + 1));
        parallel_for(0, C, [&](std::int64_t c) {
            double a = 0;
            for (std::int64_t n = 0; n < N; ++n)
                for (const T *p = xp + (n * C + c) * HW, *e = p + HW; p != e; ++p) a += *p;
            s[static_cast<std::size_t>(c)] = a;
        });
        s[static_cast<std::size_t>(C)] = static_cast<double>(N * HW);
        replicas->sum(s.data(), C + 1);
        const double M = s[static_cast<std::size_t>(C)];
        MEDIMG_CHECK(M > 1, ValueError, "SyncBatchNorm: ", M, " values per channel over all replicas; need more than one");
        std::vector<double> mean(static_cast<std::size_t>(C)), var(static_cast<std::size_t>(C));
        for (std::int64_t c = 0; c < C; ++c) mean[static_cast<std::size_t>(c)] = s[static_cast<std::size_t>(c)] / M;
        // Sum 2: centred squares.
        parallel_for(0, C, [&](std::int64_t c) {
            const double mu = mean[static_cast<std::size_t>(c)];
            double a = 0;
            for (std::int64_t n = 0; n < N; ++n)
                for (const T *p = xp + (n * C + c) * HW, *e = p + HW; p != e; ++p) a += (*p - mu) * (*p - mu);
            var[static_cast<std::size_t>(c)] = a;
        });
        replicas->sum(var.data(), C);
        auto invstd = std::make_shared<std::vector<double>>(static_cast<std::size_t>(C));
        auto y = Tensor<T, Cpu>::empty(x.shape());
        const T* g = gamma.value().data();
        const T* b = beta.value().data();
        for (std::int64_t c = 0; c < C; ++c) {
            auto& v = var[static_cast<std::size_t>(c)];
            v /= M;
            (*invstd)[static_cast<std::size_t>(c)] = 1.0 / std::sqrt(v + eps);
            if (running_mean.defined()) {
                running_mean.data()[c] = static_cast<T>((1 - momentum) * running_mean.data()[c] + momentum * mean[static_cast<std::size_t>(c)]);
                running_var.data()[c] = static_cast<T>((1 - momentum) * running_var.data()[c] + momentum * v * M / (M - 1));
            }
        }
        parallel_for(0, N * C, [&](std::int64_t nc) {
            const auto c = static_cast<std::size_t>(nc % C);
            const double mu = mean[c], k = (*invstd)[c] * g[c];
            const T* p = xp + nc * HW;
            T* q = y.data() + nc * HW;
            for (std::int64_t i = 0; i < HW; ++i) q[i] = static_cast<T>((p[i] - mu) * k + b[c]);
        });
        auto xn = x.node(), gn = gamma.node(), bn = beta.node();
        auto mean_p = std::make_shared<std::vector<double>>(std::move(mean));
        const Tensor<T, Cpu> gs = gamma.value();
        return Var<T, B>::from_op("sync_batch_norm", std::move(y), {xn, gn, bn},
                                  [xn, gn, bn, xv, gs, mean_p, invstd, replicas, N, C, HW, M](const Tensor<T, B>& dy_in) {
            const Tensor<T, Cpu> dyv = dy_in;
            const T *dy = dyv.data(), *xp = xv.data(), *g = gs.data();
            // Local sums: dbeta = sum dy, dgamma = sum dy xhat; then both over the replicas for dx.
            std::vector<double> sums(static_cast<std::size_t>(2 * C));
            parallel_for(0, C, [&](std::int64_t c) {
                const double mu = (*mean_p)[static_cast<std::size_t>(c)], is = (*invstd)[static_cast<std::size_t>(c)];
                double a = 0, d = 0;
                for (std::int64_t n = 0; n < N; ++n) {
                    const T *p = xp + (n * C + c) * HW, *q = dy + (n * C + c) * HW;
                    for (std::int64_t i = 0; i < HW; ++i) {
                        a += q[i];
                        d += q[i] * (p[i] - mu) * is;
                    }
                }
                sums[static_cast<std::size_t>(c)] = a;
                sums[static_cast<std::size_t>(C + c)] = d;
            });
            if (detail::wants(gn)) {
                auto dg = Tensor<T, B>::empty({C});
                for (std::int64_t c = 0; c < C; ++c) dg.data()[c] = static_cast<T>(sums[static_cast<std::size_t>(C + c)]);
                gn->accumulate(dg, true);
            }
            if (detail::wants(bn)) {
                auto db = Tensor<T, B>::empty({C});
                for (std::int64_t c = 0; c < C; ++c) db.data()[c] = static_cast<T>(sums[static_cast<std::size_t>(c)]);
                bn->accumulate(db, true);
            }
            // Every rank sums, whether or not its x wants a gradient: the ranks' calls must match.
            replicas->sum(sums.data(), 2 * C);
            if (!detail::wants(xn)) return;
            auto dx = Tensor<T, B>::empty(xn->shape);
            parallel_for(0, N * C, [&](std::int64_t nc) {
                const auto c = static_cast<std::size_t>(nc % C);
                const double mu = (*mean_p)[c], is = (*invstd)[c], k = g[c] * is;
                const double mdy = sums[c] / M, mdyx = sums[static_cast<std::size_t>(C) + c] / M;
                const T *p = xp + nc * HW, *q = dy + nc * HW;
                T* o = dx.data() + nc * HW;
                for (std::int64_t i = 0; i < HW; ++i) o[i] = static_cast<T>(k * (q[i] - mdy - (p[i] - mu) * is * mdyx));
            });
            xn->accumulate(dx, true);
        });
    }
}

}  // namespace medimg::autograd
