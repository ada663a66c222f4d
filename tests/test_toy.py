"""The paper's 1-D examples: closed forms against samples, Eq. 3, and Fig. 1."""

import os

import numpy as np
import pytest

from conftest import run_module
from experiments import toy

A, B = 2.0, 0.5


@pytest.fixture(scope="module")
def rows():
  return toy.divergences(A, B, samples=100_000, seed=1, points=7)


def test_sampled_w1_and_risk_agree_with_the_closed_forms(rows):
  # Quantile error of 100K sorted samples: about a / sqrt(n) = 0.006; allow 3x.
  for r in rows:
    assert r.w1_samples == pytest.approx(r.w1_closed, abs=0.02), r
    assert r.risk_samples == pytest.approx(B / (A + B), abs=0.01), r


def test_closed_forms_by_hand():
  # D2 at either end of D1's intervals: each half moves U[a, 2a] onto a b-wide end,
  # (a - b)/2 = 0.75; in the middle (x0 = 1.5a) half of that, 0.375.
  assert toy.w1_d1_d2(A, B, A + B / 2) == pytest.approx(0.75)
  assert toy.w1_d1_d2(A, B, 1.5 * A) == pytest.approx(0.375)
  # D3 at x0 = a + b: appendix C's minimum a^2 / (2(a-b)) + a - b = 4/3 + 1.5.
  assert toy.w1_d1_d3(A, B, A + B) == pytest.approx(4 / 3 + 1.5)
  assert toy.threshold_risk(A, B) == pytest.approx(0.2)


def test_eq3_wasserstein_separates_what_h_divergence_does_not(rows):
  d2 = [r for r in rows if r.query == "d2"]
  d3 = [r for r in rows if r.query == "d3"]
  assert min(r.w1_samples for r in d3) > max(r.w1_samples for r in d2)
  assert min(r.w1_closed for r in d3) > max(r.w1_closed for r in d2)
  risks = np.array([r.risk_samples for r in rows])
  assert np.ptp(risks) < 0.01      # dH(D1,D2) = dH(D1,D3), whatever x0


def test_uncertainty_sampling_is_stuck_at_the_10_percent_boundary():
  curves = toy.sampling_bias(repetitions=6, seed=0)
  assert np.allclose(curves["uncertainty"]["final_risk"], 0.10, atol=0.005)
  assert toy.true_risk(2.0) == pytest.approx(0.05) and toy.true_risk(3.5) == pytest.approx(0.10)
  assert np.median(curves["random"]["final_risk"]) < 0.07


def test_cli_writes_the_report(tmp_path):
  done = run_module("experiments.toy", f"--out={tmp_path}", "--samples=50000")
  assert done.returncode == 0, done.stderr
  text = (tmp_path / "toy.md").read_text()
  assert text.count("- [x]") == 6 and "- [ ]" not in text
  assert (tmp_path / "toy_divergences.png").stat().st_size > 10_000
  bad = run_module("experiments.toy", f"--out={tmp_path}", "--a=1", "--b=2")
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: --a=1")


def test_widths_where_d3_does_not_fit_are_refused(tmp_path):
  """For a/2 < b < a, D3 leaves D1's interval and the closed form is not W1 any more:
  at a=3, b=2, x0=5 it gives 5.5, optimal transport between samples 5.0."""
  rng = np.random.default_rng(0)
  d1, d3 = (toy.sample(rng, 3.0, 2.0, 5.0, which, 200_000) for which in ("d1", "d3"))
  assert toy.w1_d1_d3(3.0, 2.0, 5.0) == pytest.approx(5.5)
  assert toy.empirical_w1(d1, d3) == pytest.approx(5.0, abs=0.02)
  assert toy.valid_widths(3.0, 1.5) and not toy.valid_widths(3.0, 2.0)
  with pytest.raises(ValueError, match="need 0 < b <= a/2"):
    toy.divergences(3.0, 2.0, samples=1000, seed=0)
  bad = run_module("experiments.toy", f"--out={tmp_path}", "--a=3", "--b=2")
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines() == [
      "error: --a=3.0 --b=2.0: need 0 < b <= a/2 (D3 = U([x0-b, x0+b]) must fit inside [a, 2a])"]
  assert not os.listdir(tmp_path)


def test_the_docstring_s_peak_of_the_printed_formula_is_the_code_s():
  a, b = 2.0, 0.5
  x0 = np.linspace(*toy.x0_range(a, b, "d2"), 10_001)
  peak = toy.w1_d1_d2_as_printed(a, b, x0)
  assert peak.max() == pytest.approx(1.5 * a + 0.5 * b) and peak.argmax() == len(x0) - 1
  assert "3a/2 + b/2 as the maximum\n   over x0 (at x0 = 2a - b/2)" in toy.__doc__
