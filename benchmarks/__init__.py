"""jppl's benchmarks: performance and correctness against NumPyro and BlackJAX, and posteriordb.

Run a benchmark from the repository root as a module (or by its path)::

    .venv/bin/python -m benchmarks.nuts --quick
    .venv/bin/python benchmarks/nuts.py --quick      # the same

The scripts (each with its command line and its results in ``benchmarks/results/``):

* :mod:`benchmarks.nuts`: NUTS, jppl vs NumPyro vs BlackJAX (ESS/s, time to first draw);
* :mod:`benchmarks.svi`: SVI steps per second, jppl vs NumPyro;
* :mod:`benchmarks.bnn`: sampling parallelism of a Bayesian neural network (S particles, D
  devices);
* :mod:`benchmarks.parallel`: ``jppl.parallel`` memory, FLOPs and collectives per device;
* :mod:`benchmarks.posteriordb`: correctness against 21 Stan reference posteriors;
* :mod:`benchmarks.adaptation`: warm-up schemes (Stan, nutpie) on the same posteriors;
* :mod:`benchmarks.progress`: the cost of the live progress bar;
* :mod:`benchmarks.likelihood_grad`: a fused likelihood gradient vs autodiff and NumPyro;
* :mod:`benchmarks.import_time`: ``import jppl`` vs ``import numpyro``;
* :mod:`benchmarks.enumeration`: NUTS on models with enumerated discrete sites (a mixture, an
  HMM with ``scan``), jppl vs NumPyro with funsor (ESS/s, gradient time against length).

Shared pieces, one place each:

* :mod:`benchmarks.problems`: the models and data used by more than one benchmark (eight
  schools, radon, the 100-d Gaussian, logistic regression and its covertype-sized data, the
  digits BNN) and the MCMC problems built from them;
* :mod:`benchmarks.posteriordb_models`: the 21 posteriordb posteriors (data in
  ``benchmarks/posteriordb/data``);
* :mod:`benchmarks.workers`: fresh-interpreter runs (``--worker`` subprocesses with their result
  as JSON, JSON over stdout) and the fake CPU devices (imports no JAX);
* :mod:`benchmarks.timing`: timing inside one process (compile time, interleaved repeats,
  medians) and XLA's figures of a compiled program;
* :mod:`benchmarks.report`: machine information, JSON and markdown result files, tables and
  ratio columns.

This package imports nothing itself (in particular not JAX: a benchmark sets its fake CPU
devices before JAX starts).
"""
