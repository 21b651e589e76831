"""jppl demo: write a model, trace it, condition it, and evaluate its log density.

Run with `bash scripts/demo.sh` (it creates the virtualenv on first use).
"""

import jax
import jax.numpy as jnp

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.infer import log_density
from jppl.reparam import LocScaleReparam


def eight_schools(sigma, y=None):
    """The classic centered hierarchical model of eight schools' coaching effects."""
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("schools", sigma.shape[0]):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("y", dist.Normal(theta, sigma), obs=y)


def main() -> None:
    y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    # 1. Trace a prior draw: every site, its distribution, shape and value.
    tr = handlers.trace(handlers.seed(eight_schools, rng_seed=0)).get_trace(sigma)
    print("Prior trace of eight_schools:")
    for name, site in tr.items():
        if site["type"] == "sample":
            kind = "observed" if site["is_observed"] else "latent"
            print(f"  {name:6s} {kind:8s} {type(site['fn']).__name__:22s} "
                  f"shape={tuple(site['value'].shape)}")

    # 2. Condition on the data and evaluate the log joint at a parameter value.
    params = {"mu": jnp.array(4.0), "tau": jnp.array(3.0), "theta": jnp.full(8, 4.0)}
    conditioned = handlers.condition(eight_schools, data={"y": y})
    log_joint, _ = log_density(conditioned, (sigma,), {}, params)
    print(f"\nlog p(y, mu=4, tau=3, theta=4) = {float(log_joint):.4f}")

    # 3. The same model, non-centered by a handler instead of a rewrite.
    noncentered = handlers.reparam(eight_schools, config={"theta": LocScaleReparam(centered=0)})
    tr_nc = handlers.trace(handlers.seed(noncentered, rng_seed=0)).get_trace(sigma, y)
    print("Non-centered sites:", [n for n, s in tr_nc.items() if s["type"] == "sample"])

    # 4. Log densities are jit- and grad-friendly.
    grad = jax.jit(jax.grad(lambda p: log_density(conditioned, (sigma,), {}, p)[0]))(params)
    print("d log p / d mu =", float(grad["mu"]))


if __name__ == "__main__":
    main()
