"""Behavioural tests of the model (CheckList: Ribeiro et al., ACL 2020), the behaviour stage's
mechanics:
- suite:   the suite's YAML files read and checked (each problem one line naming file and
           line), and expanded into cases deterministically
- perturb: the invariance tests' perturbations of a text (names, mentions, links, typos, ...)
- verdict: each case's pass or fail from the predictions, and the failure rates per test,
           capability and label
"""
