"""khe-bayes: Bayesian reanalysis of the sirolimus-for-KHE cohort (Int J Cancer 2017;141:848-855).

The path through the package is evidence -> data -> model -> posterior -> checks -> report:

- :mod:`khe_bayes.evidence`  the published numbers as typed records with their quotes
- :mod:`khe_bayes.aggregate` models that need only aggregate counts
- :mod:`khe_bayes.sampling`  fitting a built model into ArviZ InferenceData
- :mod:`khe_bayes.summary`   posterior summaries and convergence flags over InferenceData
- :mod:`khe_bayes.report`    the readable report
"""

__version__ = "0.1.0"
