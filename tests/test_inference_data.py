"""Export to ArviZ on whichever line is installed: ``InferenceData`` on 0.x, ``DataTree`` on 1.x.

The same checks run on both lines (CI's oldest leg has ArviZ 0.x, its main leg ArviZ 1.x):
the groups, variables, dims and coords are the same, the values read back equal the arrays
that went in, and a netCDF file written by ArviZ's own writer reads back equal.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import jppl
import jppl.distributions as dist
from jppl.infer import MCMC, NUTS
from jppl.inference_data import arviz_line, to_inference_data

LINE = arviz_line()
QUIET = {"progress_bar": False, "warn": False}
az = importlib.import_module("arviz")  # a dev dependency on every Python the project supports


def groups(data):
    """Group names of an InferenceData (0.x) or a DataTree (1.x)."""
    if LINE == 0:
        return set(data.groups())
    return set(data.children)


def dataset(data, group):
    """One group as an ``xarray.Dataset`` on either line."""
    node = data[group]
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def test_line_matches_the_installed_arviz():
    major = int(az.__version__.split(".")[0])
    assert LINE == (0 if major == 0 else 1)
    out = to_inference_data({"a": np.zeros((2, 3))})
    if LINE == 0:
        assert isinstance(out, az.InferenceData)
    else:
        assert isinstance(out, xr.DataTree)


def test_arrays_round_trip_with_dims_and_coords(tmp_path):
    rng = np.random.default_rng(0)
    posterior = {"mu": rng.normal(size=(2, 5)), "theta": rng.normal(size=(2, 5, 3, 4))}
    stats = {"diverging": rng.random((2, 5)) < 0.1, "lp": rng.normal(size=(2, 5))}
    loglik = {"y": rng.normal(size=(2, 5, 3))}
    observed = {"y": rng.normal(size=3)}
    coords = {"school": ["a", "b", "c"]}
    dims = {"theta": ["school"], "y": ["school"]}
    out = to_inference_data(
        posterior,
        sample_stats=stats,
        log_likelihood=loglik,
        observed_data=observed,
        coords=coords,
        dims=dims,
    )
    assert groups(out) == {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    post = dataset(out, "posterior")
    assert post["mu"].dims == ("chain", "draw")
    assert post["theta"].dims == ("chain", "draw", "school", "theta_dim_1")
    assert list(post["school"].values) == coords["school"]
    np.testing.assert_array_equal(post["chain"].values, [0, 1])
    np.testing.assert_array_equal(post["draw"].values, np.arange(5))
    assert post.attrs["inference_library"] == "jppl"
    assert dataset(out, "log_likelihood")["y"].dims == ("chain", "draw", "school")
    assert dataset(out, "observed_data")["y"].dims == ("school",)
    for group, values in [
        ("posterior", posterior),
        ("sample_stats", stats),
        ("log_likelihood", loglik),
        ("observed_data", observed),
    ]:
        ds = dataset(out, group)
        assert set(ds.data_vars) == set(values)
        for name, value in values.items():
            np.testing.assert_array_equal(ds[name].values, value)

    # ArviZ's own netCDF writer and reader (h5netcdf, in the dev and arviz extras).
    path = tmp_path / "out.nc"
    out.to_netcdf(str(path), engine="h5netcdf")
    back = az.from_netcdf(str(path))
    assert groups(back) == groups(out)
    for group in groups(out):
        xr.testing.assert_equal(dataset(back, group), dataset(out, group))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="Unknown ArviZ group"):
        to_inference_data({"a": np.zeros((2, 3))}, posterior_predictve={"y": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"dims\['a'\] names 2 dimensions"):
        to_inference_data({"a": np.zeros((2, 3, 4))}, dims={"a": ["x", "y"]})
    with pytest.raises(ValueError, match=r"posterior\['a'\] has shape \(3,\)"):
        to_inference_data({"a": np.zeros(3)})
    with pytest.raises(ValueError, match="same event dimensions in every group"):
        to_inference_data(
            {"y": np.zeros((2, 3, 4))}, posterior_predictive={"y": np.zeros((2, 3, 4, 5))}
        )
    with pytest.raises(ValueError, match="at least one non-empty group"):
        to_inference_data({})


def _model(sigma, y=None):
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfNormal(5.0))
    with jppl.plate("school", sigma.shape[0]):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("y", dist.Normal(theta, sigma), obs=y)


def test_mcmc_to_arviz_round_trips():
    y = jnp.array([28.0, 8.0, -3.0, 7.0])
    sigma = jnp.array([15.0, 10.0, 16.0, 11.0])
    mcmc = MCMC(
        NUTS(_model), num_warmup=50, num_samples=30, num_chains=2, progress_bar=False, warn=False
    )
    mcmc.run(jax.random.key(0), sigma, y)
    out = mcmc.to_arviz(coords={"school": list("ABCD")}, dims={"theta": ["school"]})
    assert groups(out) == {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    samples = mcmc.get_samples(group_by_chain=True)
    post = dataset(out, "posterior")
    assert post["theta"].dims == ("chain", "draw", "school")
    assert list(post["school"].values) == list("ABCD")
    for name in ("mu", "tau", "theta"):
        np.testing.assert_array_equal(post[name].values, np.asarray(samples[name]))
    fields = mcmc.get_extra_fields(group_by_chain=True)
    stats = dataset(out, "sample_stats")
    np.testing.assert_array_equal(stats["lp"].values, -np.asarray(fields["potential_energy"]))
    np.testing.assert_array_equal(stats["diverging"].values, np.asarray(fields["diverging"]))
    np.testing.assert_array_equal(dataset(out, "observed_data")["y"].values, np.asarray(y))
    loglik = dataset(out, "log_likelihood")["y"]
    expected = dist.Normal(samples["theta"][1, 3], sigma).log_prob(y)
    np.testing.assert_allclose(loglik.values[1, 3], expected, rtol=1e-5)
    # ArviZ's diagnostics read it on either line.
    if LINE == 0:
        table = az.summary(out, var_names=["mu"], kind="diagnostics")
    else:
        table = az.summary(out, var_names=["mu"], kind="diagnostics", round_to="none")
    assert np.isfinite(float(table.loc["mu", "r_hat"]))


def _nested(x, y=None):
    """Plates at dims -1 (obs) and -2 (group), an event-dim site, a deterministic site."""
    scale = jppl.sample("scale", dist.HalfNormal(1.0))
    with jppl.plate("group", 3, dim=-2):
        loc = jppl.sample("loc", dist.Normal(0.0, 1.0))  # (3, 1)
        with jppl.plate("obs", x.shape[0], dim=-1):
            mean = jppl.deterministic("mean", loc + x)  # (3, N)
            jppl.sample("y", dist.Normal(mean, scale), obs=y)
    pair = jppl.sample("pair", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))  # event (2,)
    with jppl.plate("rows", 4):
        jppl.sample("z", dist.MultivariateNormal(pair, jnp.eye(2)), obs=jnp.ones((4, 2)))


def test_plate_dims_name_the_axes_plates_span():
    from jppl.handlers import seed, trace
    from jppl.inference_data import plate_dims

    x = jnp.arange(5.0)
    tr = trace(seed(_nested, rng_seed=0)).get_trace(x, jnp.zeros((3, 5)))
    assert plate_dims(tr) == {
        "loc": ["group", None],  # the obs plate does not enclose it; its axis has size 1
        "mean": ["group", "obs"],
        "y": ["group", "obs"],
        "z": ["rows", None],  # the event axis of the MultivariateNormal is not a plate's
    }


def test_to_arviz_names_dims_after_plates_and_adds_predictive_groups():
    from jppl.infer import Predictive

    x = jnp.arange(5.0)
    y = jnp.arange(15.0).reshape(3, 5) / 10.0
    mcmc = MCMC(NUTS(_nested), num_warmup=30, num_samples=20, num_chains=2, **QUIET)
    mcmc.run(jax.random.key(1), x, y)
    prior = Predictive(_nested, num_samples=7)(jax.random.key(2), x)
    post_pred = Predictive(_nested, mcmc.get_samples())(jax.random.key(3), x)
    x_new = jnp.arange(8.0)
    preds = Predictive(_nested, mcmc.get_samples(), return_sites=["y"])(jax.random.key(4), x_new)
    out = mcmc.to_arviz(
        prior=prior,
        posterior_predictive=post_pred,
        predictions=preds,
        coords={"group": ["a", "b", "c"]},
        dims={"pair": ["component"]},
    )
    assert groups(out) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "prior",
        "prior_predictive",
        "posterior_predictive",
        "predictions",
    }
    post = dataset(out, "posterior")
    assert post["loc"].dims == ("chain", "draw", "group", "loc_dim_1")
    assert post["mean"].dims == ("chain", "draw", "group", "obs")
    assert post["pair"].dims == ("chain", "draw", "component")
    assert list(post["group"].values) == ["a", "b", "c"]
    assert dataset(out, "observed_data")["y"].dims == ("group", "obs")
    assert dataset(out, "observed_data")["z"].dims == ("rows", "z_dim_1")
    loglik = dataset(out, "log_likelihood")
    assert loglik["y"].dims == ("chain", "draw", "group", "obs")
    assert loglik["z"].dims == ("chain", "draw", "rows")  # no event axis in a log density
    # Predictive draws: flat (chain * draw) reshaped to (chain, draw), values unchanged.
    pp = dataset(out, "posterior_predictive")
    np.testing.assert_array_equal(pp["y"].values, np.asarray(post_pred["y"]).reshape(2, 20, 3, 5))
    assert pp["y"].dims == ("chain", "draw", "group", "obs")
    pred = dataset(out, "predictions")
    assert pred["y"].shape == (2, 20, 3, 8) and pred["y"].dims[-1] == "obs"
    # Prior draws: one chain; observed sites in prior_predictive, latent ones in prior.
    assert set(dataset(out, "prior").data_vars) == {"scale", "loc", "mean", "pair"}
    assert set(dataset(out, "prior_predictive").data_vars) == {"y", "z"}
    np.testing.assert_array_equal(dataset(out, "prior")["scale"].values, prior["scale"][None])

    with pytest.raises(ValueError, match=r"posterior_predictive\['y'\] has shape \(7, 3, 5\)"):
        mcmc.to_arviz(posterior_predictive={"y": prior["y"]})
